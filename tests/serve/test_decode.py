"""Decoding untrusted images (``fcdd.preprocess``): only the listed formats, detected from the bytes;
dimensions checked from the header before decoding; files refused with an error naming them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from fcdd.data.base import DataError, to_array
from fcdd.preprocess import (
    FILE_FORMATS,
    UPLOAD_FORMATS,
    ImageRejected,
    decode_bytes,
    display_copy,
    iter_batches,
    open_checked,
    open_file,
    to_8bit,
)

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n0 0 moveto 8 8 lineto stroke\nshowpage\n%%EOF\n"


def encoded(fmt: str, size=(20, 10), mode: str = "RGB", **options) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 90).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def bomb(width: int, height: int) -> bytes:
    """A small PNG that decodes to width x height grey pixels."""
    return encoded("PNG", (width, height), "L", optimize=True)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "WEBP"])
def test_listed_formats_decode(fmt):
    assert fmt in UPLOAD_FORMATS
    image = decode_bytes(encoded(fmt), 1000, 100)
    assert image.format == fmt and image.size == (20, 10)


@pytest.mark.parametrize("fmt", ["GIF", "TGA", "ICO", "PCX"])
def test_other_formats_are_refused_whatever_the_name(fmt):
    data = encoded(fmt, (16, 16))
    Image.open(io.BytesIO(data)).load()  # PIL itself would read it
    with pytest.raises(ImageRejected, match="not a supported image format") as err:
        decode_bytes(data, 1000, 100)
    assert err.value.reason == "unknown_format"


def test_eps_never_reaches_its_plugin(monkeypatch):
    opened = []

    def spy(self):
        opened.append(self)
        raise SyntaxError("spied")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", spy)
    with pytest.raises(ImageRejected) as err:
        decode_bytes(EPS, 1000, 100)
    assert err.value.reason == "unknown_format" and opened == []
    with pytest.raises(Exception):  # noqa: B017 - the spy is live: unrestricted PIL would hand EPS to it
        Image.open(io.BytesIO(EPS))
    assert len(opened) == 1


def test_pixels_are_checked_from_the_header_before_decoding(monkeypatch):
    data = bomb(6000, 5000)
    assert len(data) < 100_000  # 30 megapixels in a small file
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self))
    with pytest.raises(ImageRejected, match="6000x5000") as err:
        decode_bytes(data, max_pixels=1_000_000, max_side=8192)
    assert err.value.reason == "too_large" and decoded == []
    image = open_checked(data, max_pixels=30_000_000, max_side=8192)  # at the limit: header read only
    assert image.size == (6000, 5000) and decoded == []


def test_side_limit_and_other_rejections():
    with pytest.raises(ImageRejected, match="4000x8") as err:
        decode_bytes(bomb(4000, 8), max_pixels=10**8, max_side=2048)
    assert err.value.reason == "too_large"
    good = encoded("PNG", (64, 64), "RGB", compress_level=0)
    with pytest.raises(ImageRejected, match="truncated") as err:
        decode_bytes(good[: len(good) // 2])
    assert err.value.reason == "corrupt"
    with pytest.raises(ImageRejected) as err:
        decode_bytes(b"")
    assert err.value.reason == "empty"
    assert decode_bytes(io.BytesIO(good)).size == (64, 64)  # a binary file, as a server spools it


def test_files_name_themselves_in_errors(tmp_path, monkeypatch):
    gif = tmp_path / "picture.png"  # a GIF whatever its name says
    gif.write_bytes(encoded("GIF", (8, 8)))
    with pytest.raises(DataError, match="picture.png.*not a supported image format"):
        open_file(gif)
    big = tmp_path / "big.png"
    big.write_bytes(bomb(3000, 3000))
    with pytest.raises(DataError, match="big.png.*3000x3000"):
        open_file(big, max_pixels=1_000_000)
    pgm = tmp_path / "grey.pgm"
    Image.new("L", (8, 8)).save(pgm)
    assert "PPM" in FILE_FORMATS and open_file(pgm).size == (8, 8)
    # PIL's own bomb check, below ours here, becomes the same clear error
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataError, match="big.png.*too large"):
        open_file(big)
    loaded = next(iter_batches([big, pgm], 1, 8, 4, skip_errors=True))
    assert loaded.indices == [1] and "big.png" in loaded.errors[0][1]


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_wide_images_scale_to_8bit_like_training(mode, monkeypatch):
    rng = np.random.default_rng(0)
    values = rng.integers(100, 60000, (37, 53))
    image = Image.fromarray(values.astype(np.float32) / 50000) if mode == "F" else Image.fromarray(values.astype(np.uint16)).convert(mode)
    assert image.mode == mode
    monkeypatch.setattr("fcdd.preprocess.BAND_PIXELS", 200)  # many bands
    small = to_8bit(image)
    assert small.mode == "L"
    np.testing.assert_array_equal(to_array(small, 1, 16), to_array(image, 1, 16))
    np.testing.assert_array_equal(to_array(small, 3, 16), to_array(image, 3, 16))
    assert display_copy(image).size == (53, 37)


def test_served_formats_are_documented():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "PNG, JPEG, BMP, TIFF, WebP" in readme


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_predict_and_the_api_refuse_bombs_and_other_formats_by_name(tiny_run, tmp_path):
    from fcdd.detector import Detector
    from fcdd.predict import predict_files

    folder = tmp_path / "in"
    folder.mkdir()
    good = Path(tiny_run.evaluation.paths[0])
    (folder / "good.png").write_bytes(good.read_bytes())
    (folder / "animation.png").write_bytes(encoded("GIF", (8, 8)))
    (folder / "bomb.png").write_bytes(bomb(10_000, 9_000))  # 90 MP, past MAX_FILE_PIXELS, from a small file
    result = predict_files(Detector.load(tiny_run.out, device="cpu"), [folder], tmp_path / "out", progress=False)
    assert [Path(r["path"]).name for r in result.rows] == ["good.png"]
    errors = {Path(e["path"]).name: e["error"] for e in result.errors}
    assert "10000x9000" in errors["bomb.png"] and "bomb.png" in errors["bomb.png"]
    assert "not a supported image format" in errors["animation.png"]
    with pytest.raises(DataError, match="bomb.png.*10000x9000"):
        Detector.load(tiny_run.out, device="cpu").predict(folder / "bomb.png")
