"""Run artefacts a person reads: plots, heatmap galleries, the data preview, report.html."""

from fcdd.report.loader import load_run
from fcdd.report.plots import plot_mean_roc
from fcdd.report.writer import write_report

__all__ = ["load_run", "plot_mean_roc", "write_report"]
