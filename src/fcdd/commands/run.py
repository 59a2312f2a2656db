"""``fcdd run``: one model per nominal class per seed, then the aggregated table."""

from __future__ import annotations

import sys
from pathlib import Path

from fcdd.commands.base import add_config_flags, command, config_from_args
from fcdd.runner import run_experiment
from fcdd.runs_index import run_folder


def _arguments(parser) -> None:
    add_config_flags(parser, skip=("category",))
    parser.add_argument("--classes", help="comma-separated nominal classes (default: every category folder / class)")
    parser.add_argument("--seeds", type=int, default=1, help="runs per class with seeds seed, seed+1, ... (default: 1)")


@command("run", "train one model per class and seed (resumable) and aggregate the results", _arguments)
def cmd_run(args) -> None:
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    requested = config_from_args(args)
    with run_folder(requested) as config:
        if config.out != requested.out:
            print(f"experiment folder: {config.out}", file=sys.stderr)
        run_experiment(config, classes, args.seeds)
    out = Path(config.out)
    print((out / "results.md").read_text())
    print(f"table: {out / 'results.csv'}")
