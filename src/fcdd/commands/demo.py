"""``fcdd demo``: the whole pipeline on generated data."""

from __future__ import annotations

from fcdd.commands.base import command
from fcdd.demo import run_demo


def _arguments(p) -> None:
    p.add_argument("--out", default="runs/demo", help="folder for the data and the run (default: runs/demo)")
    p.add_argument("--epochs", type=int, default=None, help="override the demo's epochs")


@command("demo", "generate the synthetic set, train briefly, evaluate and show where the pictures are", _arguments)
def cmd_demo(args) -> None:
    run_demo(args.out, epochs=args.epochs)
