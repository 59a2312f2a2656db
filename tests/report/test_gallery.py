"""Heatmap galleries: ordering, normalisation ranges and the drawn pixels themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fcdd.config import Config
from fcdd.report.gallery import (
    Block,
    colourise,
    global_blocks,
    heatmap_gallery,
    normalise,
    overlay,
)
from fcdd.report.preview import preview_batch, write_preview


def _maps(n: int = 5, side: int = 16) -> torch.Tensor:
    rng = np.random.default_rng(0)
    # each map on its own scale and offset, so local and semi-global colours differ
    maps = [rng.random((side, side)) * (i + 1) + 3 * i for i in range(n)]
    return torch.tensor(np.stack(maps), dtype=torch.float32)[:, None]


def test_local_normalisation_spans_zero_to_one_per_map():
    scaled, lo, hi = normalise(_maps(), "local")
    assert np.allclose(scaled.min(axis=(1, 2)), 0) and np.allclose(scaled.max(axis=(1, 2)), 1)
    np.testing.assert_allclose(lo, _maps().amin(dim=(1, 2, 3)).numpy(), rtol=1e-6)


def test_semi_global_normalisation_uses_the_range_of_all_maps():
    maps = _maps()
    scaled, lo, hi = normalise(maps, "semi_global")
    gmin, gmax = float(maps.min()), float(maps.max())
    assert np.allclose(lo, gmin) and np.allclose(hi, gmax)
    np.testing.assert_allclose(scaled, ((maps[:, 0] - gmin) / (gmax - gmin)).numpy(), rtol=1e-5, atol=1e-6)
    assert scaled.min() == 0 and scaled.max() == 1
    assert scaled[0].max() < 0.5  # the smallest map stays dark next to the largest


def test_constant_map_does_not_divide_by_zero():
    scaled, _, _ = normalise(torch.ones(2, 1, 4, 4), "local")
    assert np.isfinite(scaled).all() and (scaled == 0).all()
    with pytest.raises(ValueError, match="normalisation"):
        normalise(torch.ones(1, 1, 4, 4), "global")


def test_overlay_alpha_blends_between_image_and_heatmap():
    image = np.full((4, 4, 3), 200, np.uint8)
    coloured = np.zeros((4, 4, 3), np.uint8)
    assert (overlay(image, coloured, 0.0) == image).all()
    assert (overlay(image, coloured, 1.0) == coloured).all()
    assert (overlay(image, coloured, 0.25) == 150).all()
    with pytest.raises(ValueError, match="overlay_alpha"):
        overlay(image, coloured, 1.5)
    with pytest.raises(ValueError, match="overlay_alpha"):
        Config(overlay_alpha=1.5)  # caught before training, not after


def test_global_blocks_pick_first_most_nominal_and_most_anomalous():
    scores = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 0.5])
    labels = np.array([0, 0, 1, 0, 1, 0, 1, 0])
    blocks = {b.key: b.indices for b in global_blocks(scores, labels, n=2)}
    assert list(blocks) == ["first_nominal", "first_anomalous", "nominal_most_nominal", "nominal_most_anomalous",
                            "anomalous_most_nominal", "anomalous_most_anomalous"]
    assert blocks["first_nominal"] == [0, 1] and blocks["first_anomalous"] == [2, 4]
    assert blocks["nominal_most_nominal"] == [7, 1] and blocks["nominal_most_anomalous"] == [0, 3]
    assert blocks["anomalous_most_nominal"] == [4, 6] and blocks["anomalous_most_anomalous"] == [2, 6]


@pytest.mark.parametrize("mode", ["local", "semi_global"])
def test_drawn_heatmap_tiles_are_the_normalised_maps(tmp_path, mode):
    maps = _maps()
    images = torch.randint(0, 255, (5, 3, 16, 16), dtype=torch.uint8)
    truth = (maps > maps.mean()).to(torch.uint8)
    shown = [4, 1, 3]  # a subset: semi-global must use only these maps' range
    layout = heatmap_gallery(images, maps, truth, tmp_path / "g.png", mode, [Block("some", shown)], scores=np.arange(5.0))
    picture = np.asarray(Image.open(tmp_path / "g.png").convert("RGB"))
    block = layout["blocks"][0]
    h, w = block["tile_size"]
    factor = h // 16
    scaled, _, _ = normalise(maps[shown], mode)
    for k, (y, x) in enumerate(block["tiles"]["heatmap"]):
        expected = colourise(scaled[k]).repeat(factor, 0).repeat(factor, 1)
        assert (picture[y : y + h, x : x + w] == expected).all()
        y, x = block["tiles"]["truth"][k]
        assert ((picture[y : y + h, x : x + w, 0] > 0) == truth[shown[k], 0].numpy().repeat(factor, 0).repeat(factor, 1).astype(bool)).all()
    if mode == "semi_global":
        assert layout["range"] == pytest.approx([float(maps[shown].min()), float(maps[shown].max())])
    else:
        for item, k in zip(block["items"], shown, strict=True):
            assert (item["lo"], item["hi"]) == pytest.approx((float(maps[k].min()), float(maps[k].max())))


def _stored(run) -> dict:
    return torch.load(Path(run.out) / "heatmaps.pt", weights_only=True)


def test_run_galleries_are_ordered_by_the_stored_scores(report_run):
    out = Path(report_run.out)
    layouts = json.loads((out / "galleries.json").read_text())
    stored = _stored(report_run)
    scores, labels = stored["scores"].numpy(), stored["labels"].numpy()
    n = report_run.config.gallery_size
    for name, label in (("nominal", 0), ("anomalous", 1)):
        for norm in ("local", "semi_global"):
            layout = layouts[f"gallery_test_{name}_{norm}"]
            assert (out / layout["path"]).is_file()
            items = layout["blocks"][0]["items"]
            got = [item["score"] for item in items]
            assert got == sorted(got, reverse=True)
            assert got == pytest.approx(sorted(scores[labels == label], reverse=True)[:n])
            assert all(item["label"] == label and item["path"] == stored["paths"][item["index"]] for item in items)


def test_run_gallery_ranges_are_local_or_over_the_shown_maps(report_run):
    layouts = json.loads((Path(report_run.out) / "galleries.json").read_text())
    heatmaps = _stored(report_run)["heatmaps"].float()
    for norm in ("local", "semi_global"):
        layout = layouts[f"gallery_test_global_{norm}"]
        shown = sorted({item["index"] for block in layout["blocks"] for item in block["items"]})
        for block in layout["blocks"]:
            for item in block["items"]:
                if norm == "local":
                    expected = (float(heatmaps[item["index"]].min()), float(heatmaps[item["index"]].max()))
                else:
                    expected = (float(heatmaps[shown].min()), float(heatmaps[shown].max()))
                assert (item["lo"], item["hi"]) == pytest.approx(expected, rel=1e-5)


def test_run_global_gallery_rows(report_run):
    layouts = json.loads((Path(report_run.out) / "galleries.json").read_text())
    stored = _stored(report_run)
    scores, labels = stored["scores"].numpy(), stored["labels"].numpy()
    blocks = {b["key"]: [item["index"] for item in b["items"]] for b in layouts["gallery_test_global_semi_global"]["blocks"]}
    anomalous = np.flatnonzero(labels == 1)
    assert blocks["first_anomalous"] == anomalous[:10].tolist()
    assert blocks["anomalous_most_anomalous"][0] == int(anomalous[np.argmax(scores[anomalous])])
    assert blocks["anomalous_most_nominal"][0] == int(anomalous[np.argmin(scores[anomalous])])
    most = [scores[i] for i in blocks["nominal_most_nominal"]]
    assert most == sorted(most)


def test_training_galleries_show_both_labels(report_run):
    layouts = json.loads((Path(report_run.out) / "galleries.json").read_text())
    keys = {b["key"] for b in layouts["gallery_train_global_local"]["blocks"]}
    assert {"first_nominal", "first_anomalous", "anomalous_most_anomalous"} <= keys
    items = layouts["gallery_train_anomalous_semi_global"]["blocks"][0]["items"]
    assert all(item["label"] == 1 for item in items)


def test_preview_batch_is_augmented_supervised_and_fixed(report_run, tmp_path):
    config, splits = report_run.config, report_run.splits
    batch = preview_batch(config, splits, report_run.supervision, n=4)
    again = preview_batch(config, splits, report_run.supervision, n=4)
    assert torch.equal(batch.images, again.images)
    assert int(batch.labels.sum()) == 4 and len(batch.labels) == 8
    anomalous = batch.labels == 1
    assert (batch.maps[anomalous].flatten(1).sum(1) > 0).all()
    assert (batch.maps[~anomalous] == 0).all()
    info = write_preview(config, splits, report_run.supervision, tmp_path / "ds_preview.png", n=4)
    assert info["anomalous"] == 4 and Image.open(tmp_path / "ds_preview.png").size[0] > 4 * 32
    assert (Path(report_run.out) / "ds_preview.png").is_file()
