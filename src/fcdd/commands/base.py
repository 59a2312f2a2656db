"""What every subcommand shares: the command registry and the flags generated from ``Config``.

Each module of ``fcdd.commands`` registers its subcommand with ``@command``; ``fcdd.cli``
builds the parser from ``COMMANDS``. A command that reads run folders adds ``--trust-pickle``
with ``add_trust_flag``; ``@command`` applies it for the command's whole run.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, fields

from fcdd.config import Config, base_type, coerce, field_types, read_yaml
from fcdd.presets import PRESETS
from fcdd.registry import Registry
from fcdd.rundir import trusting_pickle

TRUST_PICKLE_HELP = (
    "load legacy run files (snapshot.pt, checkpoint.pt, heatmaps.pt) that need Python pickle. "
    "DANGER: unpickling can execute arbitrary code stored in the file; use this only for files "
    "from a source you trust. Without it such files are refused"
)


@dataclass(frozen=True)
class Command:
    run: Callable[[argparse.Namespace], None]
    help: str
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


COMMANDS: Registry[Command] = Registry("command")


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None] | None = None):
    """Register a subcommand; ``arguments(parser)`` adds its flags."""

    def register(fn):
        COMMANDS.register(name)(Command(_with_trust(fn), help, arguments))
        return fn

    return register


def _with_trust(fn: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], None]:
    """Run ``fn`` trusting legacy pickle files exactly when its ``--trust-pickle`` was given."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> None:
        with trusting_pickle(bool(getattr(args, "trust_pickle", False))):
            fn(args)

    return run


def add_trust_flag(parser: argparse.ArgumentParser) -> None:
    """``--trust-pickle``: the one opt-in to reading run files that can run code."""
    parser.add_argument("--trust-pickle", action="store_true", help=TRUST_PICKLE_HELP)


def add_config_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per Config field; defaults are suppressed so only given flags override YAML."""
    parser.add_argument("--config", metavar="YAML", help="YAML file of options (flags given here override it)")
    add_trust_flag(parser)  # resuming reads the run folder's checkpoint
    hints = field_types()
    for f in fields(Config):
        if f.name in skip:
            continue
        kind, _ = base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        # argparse expands %-formats in help texts: a literal % (as in "top 1 %") must be doubled
        help_text = f"{f.metadata['help']} (default: {default})".replace("%", "%%")
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        else:
            parser.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, choices=f.metadata.get("choices"),
                                metavar=None if f.metadata.get("choices") else f.name.upper(), help=help_text)


def config_from_args(args: argparse.Namespace) -> Config:
    """Preset, then YAML file, then flags: later sources override earlier ones."""
    file_values = read_yaml(args.config) if getattr(args, "config", None) else {}
    hints = field_types()
    given = {f.name: coerce(hints[f.name], getattr(args, f.name), "--" + f.name.replace("_", "-")) for f in fields(Config) if hasattr(args, f.name)}
    preset = given.get("preset", file_values.get("preset"))
    preset_values: dict = PRESETS.get(preset) if preset else {}
    return Config.from_dict({**preset_values, **file_values, **given}, source=getattr(args, "config", None) or "options")
