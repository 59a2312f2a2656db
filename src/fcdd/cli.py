"""The ``fcdd`` command line. Flags of ``train`` (and friends) are generated from ``Config``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from fcdd.config import Config, base_type, coerce, field_types, read_yaml

COMMANDS: dict[str, tuple] = {}


def command(name: str, help: str, arguments=None):
    """Register a subcommand; ``arguments(parser)`` adds its flags. Modules in ``fcdd.commands`` use it."""

    def register(fn):
        COMMANDS[name] = (fn, help, arguments)
        return fn

    return register


def add_config_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per Config field; defaults are suppressed so only given flags override YAML."""
    parser.add_argument("--config", metavar="YAML", help="YAML file of options (flags given here override it)")
    hints = field_types()
    for f in fields(Config):
        if f.name in skip:
            continue
        kind, _ = base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default_factory is dataclasses_missing() else f.default_factory()
        # argparse expands %-formats in help texts: a literal % (as in "top 1 %") must be doubled
        help_text = f"{f.metadata['help']} (default: {default})".replace("%", "%%")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, choices=f.metadata.get("choices"),
                                metavar=None if f.metadata.get("choices") else f.name.upper(), help=help_text)


def dataclasses_missing():
    import dataclasses

    return dataclasses.MISSING


def config_from_args(args: argparse.Namespace) -> Config:
    """Preset, then YAML file, then flags: later sources override earlier ones."""
    file_values = read_yaml(args.config) if getattr(args, "config", None) else {}
    hints = field_types()
    given = {f.name: coerce(hints[f.name], getattr(args, f.name), "--" + f.name.replace("_", "-")) for f in fields(Config) if hasattr(args, f.name)}
    preset = given.get("preset", file_values.get("preset"))
    preset_values: dict = {}
    if preset:
        from fcdd.presets import PRESETS

        preset_values = PRESETS.get(preset)
    return Config.from_dict({**preset_values, **file_values, **given}, source=getattr(args, "config", None) or "options")


def _train_parser(p):
    add_config_flags(p)


@command("train", "train a model and write a run folder", _train_parser)
def cmd_train(args):
    import fcdd

    config = config_from_args(args)
    if not config.out:
        raise SystemExit("fcdd train: --out RUN_DIR is required")
    run = fcdd.train(config)
    print(json.dumps({k: run.metrics[k] for k in ("image_auroc", "pixel_auroc")}))


def _evaluate_parser(p):
    p.add_argument("run", help="run folder (with snapshot.pt and config.yaml)")
    p.add_argument("--device", default="auto")


@command("evaluate", "re-evaluate a finished run on its test set", _evaluate_parser)
def cmd_evaluate(args):
    from fcdd.evaluate_run import evaluate_run

    metrics = evaluate_run(args.run, device=args.device)
    print(json.dumps({k: metrics[k] for k in ("image_auroc", "pixel_auroc")}))


def _demo_parser(p):
    p.add_argument("--out", default="runs/demo", help="folder for the data and the run (default: runs/demo)")
    p.add_argument("--epochs", type=int, default=None, help="override the demo's epochs")


@command("demo", "generate the synthetic set, train briefly, evaluate and show where the pictures are", _demo_parser)
def cmd_demo(args):
    from fcdd.demo import run_demo

    run_demo(args.out, epochs=args.epochs)


@command("list", "list the registered networks, data sets, objectives, noise and supervision modes")
def cmd_list(args):
    from fcdd.data import DATASETS
    from fcdd.data.noise import NOISE
    from fcdd.data.supervision import SUPERVISION
    from fcdd.methods import METHODS
    from fcdd.models import NETS

    for title, registry in (("nets", NETS), ("datasets", DATASETS), ("objectives", METHODS), ("noise modes", NOISE), ("supervision modes", SUPERVISION)):
        print(f"{title}: {', '.join(registry.names())}")


def build_parser() -> argparse.ArgumentParser:
    import fcdd.commands
    from fcdd.registry import import_submodules

    import_submodules("fcdd.commands", fcdd.commands.__path__)
    parser = argparse.ArgumentParser(prog="fcdd", description="Explainable visual anomaly detection (FCDD and baselines).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (fn, help_text, arguments) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if arguments:
            arguments(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    from fcdd.data.base import DataError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (DataError, FileNotFoundError, FileExistsError, ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"fcdd {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    # run through the package module so that subcommands register with the same registry
    from fcdd.cli import main as package_main

    sys.exit(package_main())
