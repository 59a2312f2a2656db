"""The ``fcdd`` command line: one subcommand per module of ``fcdd.commands``.

Flags of ``train`` (and friends) are generated from ``Config``.
"""

from __future__ import annotations

import argparse
import sys

import torch

from fcdd import __version__
from fcdd.commands import COMMANDS, config_from_args
from fcdd.data.base import DataError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fcdd", description="Explainable visual anomaly detection (FCDD and baselines).")
    parser.add_argument("--version", action="version", version=f"fcdd {__version__} (torch {torch.__version__})")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, spec in COMMANDS.items():
        p = sub.add_parser(name, help=spec.help, description=spec.help)
        if spec.arguments:
            spec.arguments(p)
        p.set_defaults(func=spec.run)
    return parser


def main(argv: list[str] | None = None) -> int:
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


__all__ = ["build_parser", "config_from_args", "main"]

if __name__ == "__main__":
    sys.exit(main())
