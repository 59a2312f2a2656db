"""Run artefacts a person reads: plots, heatmap galleries, the data preview, report.html.

The report reads a ``fcdd.rundir.Run`` (fresh from training or read back with ``load_run``)
and nothing else.
"""

from fcdd.report.plots import plot_mean_roc
from fcdd.report.writer import write_report

__all__ = ["plot_mean_roc", "write_report"]
