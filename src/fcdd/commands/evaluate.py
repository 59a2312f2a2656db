"""``fcdd evaluate RUN``: score a finished run's test set again from its snapshot."""

from __future__ import annotations

import json

from fcdd.commands.base import command
from fcdd.evaluate_run import evaluate_run


def _arguments(p) -> None:
    p.add_argument("run", help="run folder (with snapshot.pt and config.yaml)")
    p.add_argument("--device", default="auto")


@command("evaluate", "re-evaluate a finished run on its test set", _arguments)
def cmd_evaluate(args) -> None:
    metrics = evaluate_run(args.run, device=args.device)
    print(json.dumps({k: metrics[k] for k in ("image_auroc", "pixel_auroc")}))
