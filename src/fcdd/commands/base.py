"""What every subcommand shares: the command registry and the flags generated from ``Config``.

Each module of ``fcdd.commands`` registers its subcommand with ``@command``; ``fcdd.cli``
builds the parser from ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, fields

from fcdd.config import Config, base_type, coerce, field_types, read_yaml
from fcdd.presets import PRESETS
from fcdd.registry import Registry


@dataclass(frozen=True)
class Command:
    run: Callable[[argparse.Namespace], None]
    help: str
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


COMMANDS: Registry[Command] = Registry("command")


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None] | None = None):
    """Register a subcommand; ``arguments(parser)`` adds its flags."""

    def register(fn):
        COMMANDS.register(name)(Command(fn, help, arguments))
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
