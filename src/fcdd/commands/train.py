"""``fcdd train``: one model, one run folder."""

from __future__ import annotations

import json

from fcdd.api import train
from fcdd.commands.base import add_config_flags, command, config_from_args


@command("train", "train a model and write a run folder", add_config_flags)
def cmd_train(args) -> None:
    config = config_from_args(args)
    if not config.out:
        raise SystemExit("fcdd train: --out RUN_DIR is required")
    run = train(config)
    print(json.dumps({k: run.metrics[k] for k in ("image_auroc", "pixel_auroc")}))
