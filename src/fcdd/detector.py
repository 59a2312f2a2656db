"""Using a trained model: ``fcdd.load(run_or_snapshot)`` gives a ``Detector``."""

from __future__ import annotations

from pathlib import Path

import torch

from fcdd.config import Config
from fcdd.methods import Method, build_method
from fcdd.train import SNAPSHOT


def read_snapshot(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / SNAPSHOT
    if not path.is_file():
        raise FileNotFoundError(f"no snapshot at {path} (expected a run folder or a snapshot.pt)")
    try:
        snapshot = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise ValueError(f"{path}: not a readable fcdd snapshot ({err})") from None
    if not isinstance(snapshot, dict) or "state_dict" not in snapshot or "config" not in snapshot:
        raise ValueError(f"{path}: not an fcdd snapshot (no config / state_dict)")
    snapshot["path"] = str(path)
    return snapshot


def method_from_snapshot(snapshot: dict) -> tuple[Config, Method]:
    """Rebuild the trained method; weights come from the snapshot, never from the network."""
    config = Config.from_dict(snapshot["config"])
    build_config = config.replace(pretrained="none") if hasattr(config, "pretrained") else config
    method = build_method(build_config, snapshot["in_channels"])
    method.load_state_dict(snapshot["state_dict"])
    return config, method.eval()


class Detector:
    """A trained model with its preprocessing: scores, heatmaps and verdicts for new images."""

    def __init__(self, snapshot: dict, device: str | torch.device = "cpu") -> None:
        self.snapshot = snapshot
        self.config, self.method = method_from_snapshot(snapshot)
        self.device = torch.device(device)
        self.method.to(self.device)
        self.image_size = int(snapshot["image_size"])
        self.in_channels = int(snapshot["in_channels"])
        self.thresholds = dict(snapshot.get("thresholds") or {})

    @classmethod
    def load(cls, run_or_snapshot: str | Path, device: str | torch.device = "cpu") -> Detector:
        return cls(read_snapshot(run_or_snapshot), device)

    def prepare(self, images) -> torch.Tensor:
        """Paths, PIL images, arrays or tensors -> a float batch resized exactly as in training."""
        from fcdd.preprocess import prepare_batch

        return prepare_batch(images, self.in_channels, self.image_size)

    def _infer(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        from fcdd.evaluation import infer

        batch = self.prepare(images).to(self.device)
        scores, heatmaps = [], []
        for start in range(0, len(batch), self.config.eval_batch_size):
            s, h = infer(self.method, batch[start : start + self.config.eval_batch_size])
            scores.append(s.cpu())
            heatmaps.append(h.cpu())
        return torch.cat(scores), torch.cat(heatmaps)

    def score(self, images) -> torch.Tensor:
        return self._infer(images)[0]

    def heatmap(self, images) -> torch.Tensor:
        return self._infer(images)[1]

    @property
    def image_threshold(self) -> float | None:
        return (self.thresholds.get("image") or {}).get("threshold")

    def predict(self, images) -> list[dict]:
        """Per image: score, heatmap (H, W), verdict ('anomalous' / 'nominal') and the threshold."""
        scores, heatmaps = self._infer(images)
        threshold = self.image_threshold
        return [
            {
                "score": float(s),
                "heatmap": h[0],
                "anomalous": None if threshold is None else bool(s >= threshold),
                "threshold": threshold,
            }
            for s, h in zip(scores, heatmaps, strict=True)
        ]


Model = Detector
