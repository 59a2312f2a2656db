"""What every subcommand shares: the command registry and the flags generated from ``Config``.

Each module of ``fcdd.commands`` registers its subcommand with ``@command``; ``fcdd.cli``
builds the parser from ``COMMANDS``. A command that reads run folders adds ``--trust-pickle``
with ``add_trust_flag``; ``@command`` applies it for the command's whole run, and gives every
command ``--progress`` / ``--no-progress`` (bars on stderr; by default only on a terminal).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from fcdd.config import GROUPS, Config, base_type, coerce, field_types, read_yaml
from fcdd.presets import PRESETS
from fcdd.registry import Registry
from fcdd.rundir import trusting_pickle
from fcdd.runtime import progress_setting

TRUST_PICKLE_HELP = (
    "load legacy run files (snapshot.pt, checkpoint.pt, heatmaps.pt) that need Python pickle. "
    "DANGER: unpickling can execute arbitrary code stored in the file; use this only for files "
    "from a source you trust. Without it such files are refused"
)
PROGRESS_HELP = (
    "draw progress bars on stderr, or never (default: only when stderr is a terminal and "
    "TQDM_DISABLE is unset, so log files and pipes get one line per epoch instead)"
)


@dataclass(frozen=True)
class Command:
    run: Callable[[argparse.Namespace], None]
    help: str
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


COMMANDS: Registry[Command] = Registry("command")


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None] | None = None):
    """Register a subcommand; ``arguments(parser)`` adds its flags (``--progress`` comes with every command)."""

    def register(fn):
        COMMANDS.register(name)(Command(_with_progress(_with_trust(fn)), help, _and_progress_flag(arguments)))
        return fn

    return register


def _with_progress(fn: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], None]:
    """Run ``fn`` with the progress bars its ``--progress`` / ``--no-progress`` asked for (neither: decide)."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> None:
        with progress_setting(getattr(args, "progress", None)):
            fn(args)

    return run


def _and_progress_flag(arguments: Callable[[argparse.ArgumentParser], None] | None) -> Callable[[argparse.ArgumentParser], None]:
    """``arguments`` followed by ``--progress`` / ``--no-progress``, the flag every command has."""

    def add(parser: argparse.ArgumentParser) -> None:
        if arguments is not None:
            arguments(parser)
        parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help=PROGRESS_HELP)

    return add


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


#: metavars of the value types (text options show their own name)
_METAVARS = {int: "N", float: "X", list: "A,B"}


def shown_default(value: Any) -> str | None:
    """A default as a person would type it: lists as ``a,b``, booleans as on / off. None and an
    empty list mean "decided at run time" (the help text says how), so nothing is shown."""
    if value is None or value == []:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def option_help(f: dataclasses.Field) -> str:
    """A field's help text with its default and range, each said once."""
    default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
    shown = shown_default(default)
    notes = [] if shown is None else [f"default: {shown}"]
    if f.metadata.get("bounds") is not None:
        notes.append(f"range {f.metadata['bounds']}")
    text = f.metadata["help"] + (f" ({'; '.join(notes)})" if notes else "")
    # argparse expands %-formats in help texts: a literal % (as in "top 1 %") must be doubled
    return text.replace("%", "%%")


def add_config_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per Config field, listed under its field's group (``config.GROUPS``) so ``--help``
    reads by topic; defaults are suppressed so only given flags override YAML."""
    parser.usage = "%(prog)s [-h] [--config YAML] [options]"  # the full list is below, by group
    parser.add_argument("--config", metavar="YAML", help="YAML file of options (flags given here override it)")
    add_trust_flag(parser)  # resuming reads the run folder's checkpoint
    groups = {name: parser.add_argument_group(name, description) for name, description in GROUPS.items()}
    hints = field_types()
    for f in fields(Config):
        if f.name in skip:
            continue
        group = groups.get(f.metadata.get("group")) or groups.setdefault("other", parser.add_argument_group("other"))
        kind, _ = base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=option_help(f))
        else:
            choices = f.metadata.get("choices")
            group.add_argument(flag, dest=f.name, default=argparse.SUPPRESS, choices=choices, help=option_help(f),
                               metavar=None if choices else _METAVARS.get(kind, f.name.upper()))


def config_from_args(args: argparse.Namespace) -> Config:
    """Preset, then YAML file, then flags: later sources override earlier ones."""
    file_values = read_yaml(args.config) if getattr(args, "config", None) else {}
    hints = field_types()
    given = {f.name: coerce(hints[f.name], getattr(args, f.name), "--" + f.name.replace("_", "-")) for f in fields(Config) if hasattr(args, f.name)}
    preset = given.get("preset", file_values.get("preset"))
    preset_values: dict = PRESETS.get(preset) if preset else {}
    return Config.from_dict({**preset_values, **file_values, **given}, source=getattr(args, "config", None) or "options")
