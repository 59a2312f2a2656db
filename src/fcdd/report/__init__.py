"""Run artefacts a person reads: plots, heatmap galleries, the HTML report."""

from fcdd.report.writer import write_report

__all__ = ["write_report"]
