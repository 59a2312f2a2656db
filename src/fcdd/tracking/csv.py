"""``--loggers csv``: ``RUN/metrics_per_epoch.csv``, one row per epoch, for spreadsheets and pandas.

The table is rewritten from the whole history after every epoch, so a resumed run's file holds
every epoch exactly once. Non-finite values (no anomalous sample in an epoch) are empty cells.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from fcdd.io import atomic_write_text
from fcdd.rundir import History
from fcdd.tracking.base import TRACKERS, Tracker

#: the table's file in the run folder
CSV_FILE = "metrics_per_epoch.csv"
#: its columns after ``epoch``: History's lists under the names of ``epoch_values``
COLUMNS = {"loss": "loss", "loss_nominal": "nominal", "loss_anomalous": "anomalous", "lr": "lr",
           "images_per_second": "images_per_second", "seconds": "seconds"}


def _cell(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else ""


def epoch_table(history: History) -> str:
    """The CSV text of ``history``: a header, then one row per epoch (numbered from 1)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["epoch", *COLUMNS])
    lists = [getattr(history, field) for field in COLUMNS.values()]
    for index, row in enumerate(zip(*lists, strict=True), 1):
        writer.writerow([index, *map(_cell, row)])
    return buffer.getvalue()


@TRACKERS.register("csv")
class CsvTracker(Tracker):
    """Per-epoch values as a CSV table; final metrics and options are in metrics.json and config.yaml."""

    def epoch(self, epoch: int, history: History) -> None:
        atomic_write_text(Path(self.out) / CSV_FILE, epoch_table(history))
