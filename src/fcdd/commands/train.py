"""``fcdd train``: one model, one run folder (``--out``, or the next version under ``runs/``)."""

from __future__ import annotations

import json
import sys

from fcdd.api import train
from fcdd.commands.base import add_config_flags, command, config_from_args
from fcdd.runs_index import run_folder


@command("train", "train a model and write a run folder", add_config_flags)
def cmd_train(args) -> None:
    requested = config_from_args(args)
    with run_folder(requested) as config:
        if config.out != requested.out:  # chosen here: say where (stdout stays the one JSON line)
            print(f"run folder: {config.out}", file=sys.stderr)
        run = train(config)
    print(json.dumps({k: run.metrics[k] for k in ("image_auroc", "pixel_auroc")}))
