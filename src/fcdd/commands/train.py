"""``fcdd train``: one model, one run folder (``--out``, or the next version under ``runs/``).

Under torchrun (``torchrun --nproc-per-node N -m fcdd train ...``) the N processes train the one
model data parallel (``fcdd.training.distributed``): rank 0 chooses the run folder, writes it and
prints the result. ``--devices N`` starts such a launch from one command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from fcdd.api import train
from fcdd.commands.base import add_config_flags, command, config_from_args
from fcdd.config import Config
from fcdd.runs_index import run_folder
from fcdd.training.distributed import World, check_process_count, relaunch, session


@command("train", "train a model and write a run folder", add_config_flags)
def cmd_train(args) -> None:
    requested = config_from_args(args)
    with session(requested.device) as world, chosen_folder(requested, world) as config:
        if world.is_main and config.out != requested.out:  # chosen here: say where (stdout stays the one JSON line)
            print(f"run folder: {config.out}", file=sys.stderr)
        if config.devices > 1 and not world.parallel:
            spawn(config, args)
            return
        run = train(config)
    if world.is_main:
        print(json.dumps({k: run.metrics[k] for k in ("image_auroc", "pixel_auroc")}))


@contextlib.contextmanager
def chosen_folder(requested: Config, world: World) -> Iterator[Config]:
    """``run_folder`` on rank 0 (a new version is reserved once), its choice shared with the other
    processes; when rank 0 cannot choose (``--resume`` of a finished run) they raise its error."""
    if not world.is_main:
        shared = world.share(None)
        if isinstance(shared, BaseException):
            raise shared
        yield shared
        return
    with contextlib.ExitStack() as stack:
        try:
            config = stack.enter_context(run_folder(requested))
        except Exception as err:
            world.share(err)
            raise
        yield world.share(config)


def spawn(config: Config, args: argparse.Namespace) -> None:
    """Train ``config`` (its run folder chosen) in ``config.devices`` processes, launched as
    torchrun launches them; each reports its own errors, and a failed launch ends this command
    with the launcher's exit status (a new run folder without a checkpoint is removed again)."""
    check_process_count(config.devices, config.device)
    with tempfile.TemporaryDirectory(prefix="fcdd-train-") as folder:
        options = Path(folder) / "config.yaml"
        config.to_yaml(options)
        status = relaunch(config.devices, ["-m", "fcdd", "train", "--config", str(options), *command_flags(args)], config.threads)
    if status:
        raise SystemExit(status)


def command_flags(args: argparse.Namespace) -> list[str]:
    """The flags of this command that are not options of ``Config`` (so not in its YAML)."""
    flags = []
    if getattr(args, "progress", None) is not None:
        flags.append("--progress" if args.progress else "--no-progress")
    if getattr(args, "trust_pickle", False):
        flags.append("--trust-pickle")
    return flags
