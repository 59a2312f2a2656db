"""``fcdd compare RUN_DIR --with hsc,ae,attention-ae``: baselines on a run's configuration."""

from __future__ import annotations

from pathlib import Path

from fcdd.commands.base import add_trust_flag, command
from fcdd.compare import compare_run
from fcdd.rundir import COMPARE


def _arguments(p) -> None:
    p.add_argument("run", help="a finished run folder (config.yaml, metrics.json, heatmaps.pt)")
    p.add_argument("--with", dest="methods", default="hsc,ae,attention-ae",
                   help="objectives to compare, comma separated; objective:arch sets --arch (default: hsc,ae,attention-ae)")
    p.add_argument("--device", default=None, help="torch device for the compared runs (default: the run's)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the compared runs (default: the run's)")
    p.add_argument("--max-columns", type=int, default=8, help="test images in the comparison figure (default: 8)")
    add_trust_flag(p)


@command("compare", "train baselines (HSC, AE, attention AE) on a run's configuration and compare heatmaps and AUROC", _arguments)
def cmd_compare(args) -> None:
    overrides = {k: v for k, v in (("device", args.device), ("threads", args.threads)) if v is not None}
    compare_run(args.run, args.methods, max_columns=args.max_columns, **overrides)
    out = Path(args.run) / COMPARE
    print((out / "metrics.md").read_text(), end="")
    print(f"figure: {out / 'comparison.png'}")
