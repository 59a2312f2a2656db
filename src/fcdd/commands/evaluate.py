"""``fcdd evaluate RUN [--data DIR]``: score a finished run's test set again, or another labelled folder."""

from __future__ import annotations

import json

from fcdd.commands.base import add_trust_flag, command
from fcdd.evaluate_run import evaluate_run
from fcdd.evaluation import HEADLINE_METRICS, RESOLUTIONS


def _arguments(p) -> None:
    p.add_argument("run", help="run folder (with snapshot.pt and config.yaml)")
    p.add_argument("--data", metavar="DIR", help="labelled folder to score instead of the run's own test set "
                   "(metrics go to RUN/evaluations/<name>.json, not over the run's metrics.json)")
    p.add_argument("--dataset", help="layout of --data (default: the run's)")
    p.add_argument("--category", help="category of --data when it is a folder of categories (default: the run's)")
    p.add_argument("--eval-resolution", choices=RESOLUTIONS, dest="eval_resolution",
                   help="pixel metrics at the network's input size or at each mask's own size (default: the run's)")
    p.add_argument("--output", metavar="FILE", help="metrics file for --data (default RUN/evaluations/<name>.json)")
    p.add_argument("--device", default="auto")
    add_trust_flag(p)


@command("evaluate", "re-evaluate a finished run on its test set or on another labelled folder", _arguments)
def cmd_evaluate(args) -> None:
    metrics = evaluate_run(args.run, device=args.device, data=args.data, dataset=args.dataset, category=args.category,
                           resolution=args.eval_resolution, output=args.output)
    headline = {key: metrics.get(key) for key, _ in HEADLINE_METRICS}
    print(json.dumps({**headline, "pixel_resolution": metrics.get("pixel_resolution"), "written_to": metrics["written_to"]}))
