"""``fcdd report RUN_DIR``: rebuild plots, galleries and report.html of a finished run."""

from __future__ import annotations

import time

from fcdd.commands.base import add_trust_flag, command
from fcdd.report import write_report
from fcdd.report.gallery import check_alpha
from fcdd.rundir import load_run
from fcdd.runtime import run_logging
from fcdd.tracking import log_figures


def _arguments(p) -> None:
    p.add_argument("run", help="run folder (with snapshot.pt, config.yaml, history.json, heatmaps.pt)")
    p.add_argument("--device", default="cpu", help="torch device for re-scoring (default: cpu)")
    p.add_argument("--reevaluate", action="store_true", help="score the test set again instead of reading heatmaps.pt")
    p.add_argument("--overlay-alpha", type=float, default=None, help="opacity of heatmap overlays (default: the run's)")
    p.add_argument("--no-train-galleries", action="store_true", help="skip scoring training images for the training galleries")
    add_trust_flag(p)


@command("report", "rebuild a finished run's plots, galleries and report.html without retraining", _arguments)
def cmd_report(args) -> None:
    if args.overlay_alpha is not None:
        check_alpha(args.overlay_alpha)
    started = time.perf_counter()
    run = load_run(args.run, device=args.device, reevaluate=args.reevaluate)
    if args.overlay_alpha is not None:
        run.config = run.config.replace(overlay_alpha=args.overlay_alpha)
    with run_logging(None):
        written = write_report(run, train_galleries=not args.no_train_galleries)
        log_figures(run, written)
    print(f"{written['report']} ({len(written)} artefacts, {time.perf_counter() - started:.1f} s)")
