"""``--loggers tensorboard``: event files in ``RUN/tensorboard/`` (``tensorboard --logdir RUN``).

Scalars ``train/*`` per epoch (losses, lr, throughput) and ``final/*`` once at the end (the
metrics of metrics.json), the options as text and, with their final metrics, in the HParams
dashboard (``RUN/tensorboard/hparams``), and the report's figures as images. Needs the
``tensorboard`` package (``pip install 'fcdd[tensorboard]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image

from fcdd.config import Config
from fcdd.rundir import History
from fcdd.runtime import versions
from fcdd.tracking.base import TRACKERS, Tracker, epoch_values, flat_params

#: the event files' folder in the run folder
TENSORBOARD_DIR = "tensorboard"


@TRACKERS.register("tensorboard", package="tensorboard", extra="tensorboard")
class TensorBoardTracker(Tracker):
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``RUN/tensorboard``; steps are epochs."""

    def __init__(self, config: Config, out: Path, reopen: bool = False) -> None:
        super().__init__(config, out, reopen)
        self._writer: Any = None

    @property
    def writer(self) -> Any:
        """The writer, made with the first record (a run refused before training leaves no files)."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # optional extra

            self._writer = SummaryWriter(log_dir=str(Path(self.out) / TENSORBOARD_DIR))
            if not self.reopen:
                self._writer.add_text("config", _as_code(yaml.safe_dump(self.config.to_dict(), sort_keys=False)))
                self._writer.add_text("versions", _as_code(yaml.safe_dump(versions(), sort_keys=False)))
        return self._writer

    def epoch(self, epoch: int, history: History) -> None:
        for key, value in epoch_values(history).items():
            self.writer.add_scalar(f"train/{key}", value, epoch)
        self.writer.flush()  # an interrupted run keeps its epochs

    def finish(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(f"final/{key}", value, step)
        # the HParams dashboard: options beside the final metrics (its own run folder, "hparams")
        self.writer.add_hparams(flat_params(self.config), {f"hparam/{k}": v for k, v in metrics.items()}, run_name="hparams")

    def figures(self, step: int, images: dict[str, Path]) -> None:
        for name, path in images.items():
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("RGB"))
            self.writer.add_image(f"report/{name}", pixels, step, dataformats="HWC")

    def close(self, failed: bool = False) -> None:
        if self._writer is not None:
            self._writer.close()


def _as_code(text: str) -> str:
    """Text that TensorBoard's markdown shows as written (indented by four spaces)."""
    return "\n".join("    " + line for line in text.splitlines())
