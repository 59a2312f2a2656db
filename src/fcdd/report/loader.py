"""``load_run(run_dir)``: a finished run folder back as a ``Run``, without retraining.

The method comes from ``snapshot.pt``, the data from the recorded config (prepared as in
training: same holdout split), the history from ``history.json`` and the test scores and heatmaps from
``heatmaps.pt`` (or a fresh evaluation when that is missing, stale or asked for).
"""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from fcdd.config import Config
from fcdd.detector import method_from_snapshot, read_snapshot
from fcdd.evaluation import Evaluation, evaluate
from fcdd.metrics import StreamingAUROC, auroc
from fcdd.train import History, pick_device, prepare_splits

log = logging.getLogger("fcdd")


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def history_from(values: dict | None) -> History:
    """A ``History`` from ``history.json`` (extra keys such as ``metrics`` are ignored)."""
    names = {f.name for f in fields(History)}
    return History(**{k: list(v) for k, v in (values or {}).items() if k in names})


def evaluation_from_heatmaps(stored: dict, test) -> Evaluation:
    """Rebuild an ``Evaluation`` from ``heatmaps.pt`` and the test set's ground-truth maps."""
    scores = torch.as_tensor(stored["scores"]).double().numpy()
    labels = torch.as_tensor(stored["labels"]).numpy()
    heatmaps = stored["heatmaps"]
    with_maps = test.has_maps
    pixel = StreamingAUROC()
    if with_maps:
        for start in range(0, len(test), 64):
            pixel.update(heatmaps[start : start + 64].float(), test.maps[start : start + 64] > 0)
    return Evaluation(
        scores=scores,
        labels=labels,
        kinds=list(stored.get("kinds") or test.kinds),
        paths=list(stored.get("paths") or test.paths),
        heatmaps=heatmaps,
        image_auroc=auroc(scores, labels),
        pixel_auroc=pixel.compute() if with_maps else None,
        pixel_auroc_error_bound=pixel.error_bound if with_maps else None,
        pixel_roc=pixel.curve() if with_maps else None,
    )


def _matches(stored: dict, test) -> bool:
    return (
        len(stored.get("scores", [])) == len(test)
        and list(stored.get("paths") or []) == list(test.paths)
        and tuple(stored["heatmaps"].shape[-2:]) == tuple(test.images.shape[-2:])
    )


def load_run(run_dir: str | Path, device: str = "cpu", reevaluate: bool = False):
    """A finished run folder as a ``fcdd.run.Run`` (``out`` = ``run_dir``)."""
    from fcdd.run import Run

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    snapshot = read_snapshot(run_dir)
    config, method = method_from_snapshot(snapshot)
    if (run_dir / "config.yaml").is_file():
        config = Config.from_yaml(run_dir / "config.yaml")
    config = config.replace(out=str(run_dir))
    dev = pick_device(device)
    method = method.to(dev).eval()
    splits = prepare_splits(config)  # holdout split and supervision's share, as in training
    stored_path = run_dir / "heatmaps.pt"
    stored = None
    if stored_path.is_file() and not reevaluate:
        stored = torch.load(stored_path, map_location="cpu", weights_only=False)
        if not _matches(stored, splits.test):
            log.warning("%s does not match the reloaded test set (%d images); evaluating again", stored_path, len(splits.test))
            stored = None
    if stored is None:
        evaluation = evaluate(method, splits.test, config.eval_batch_size, dev, progress=False)
    else:
        evaluation = evaluation_from_heatmaps(stored, splits.test)
    history = history_from(_read_json(run_dir / "history.json"))
    metrics = _read_json(run_dir / "metrics.json") or dict(snapshot.get("metrics") or {})
    if stored is None:
        metrics = {**metrics, **evaluation.metrics()}
    if "thresholds" not in metrics and snapshot.get("thresholds"):
        metrics["thresholds"] = snapshot["thresholds"]
    if np.isnan(evaluation.scores).any():
        raise ValueError(f"{run_dir}: test scores contain NaN")
    return Run(config, method, history, evaluation, metrics, splits, run_dir)
