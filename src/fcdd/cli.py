"""The ``fcdd`` command line: one subcommand per module of ``fcdd.commands``.

Flags of ``train`` (and friends) are generated from ``Config``.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys

import torch

from fcdd import __version__
from fcdd.commands import COMMANDS, config_from_args
from fcdd.runtime import console_logging

#: what a person fixes (an option, the data, the disk), reported as ``fcdd <command>: error: ...``
#: with exit status 2; ``DataError`` and ``DivergedError`` are ``ValueError``s. Anything else is
#: a bug and keeps its traceback.
USER_ERRORS = (ValueError, KeyError, FloatingPointError, OSError)

#: error numbers only writing raises: their message says which file was being written
WRITE_ERRNOS = {getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS") if hasattr(errno, name)}


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


def describe_os_error(err: OSError) -> str:
    """``No space left on device`` and friends as one line naming the file, when it is known."""
    code = err.errno
    if code is None and len(err.args) == 1 and isinstance(err.args[0], int):
        code = err.args[0]  # OSError(errno.ENOSPC)
    if code is None:
        return str(err)  # fcdd's own messages, e.g. FileNotFoundError("... missing: ...")
    what = err.strerror or os.strerror(code)
    what = what[:1].lower() + what[1:]
    if err.filename is None:
        return what
    name = f"{err.filename} -> {err.filename2}" if err.filename2 else str(err.filename)
    return f"{what} writing {name}" if code in WRITE_ERRNOS else f"{what}: {name}"


def describe(err: BaseException) -> str:
    """The line a person reads for a user error."""
    if isinstance(err, OSError):
        return describe_os_error(err)
    if isinstance(err, KeyError) and err.args:
        return str(err.args[0])  # str() of a KeyError adds quotes
    return str(err)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with console_logging():  # fcdd's INFO lines on stderr, one plain line each
            args.func(args)
    except USER_ERRORS as err:
        print(f"fcdd {args.command}: error: {describe(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; resume with --resume", file=sys.stderr)
        return 130
    return 0


__all__ = ["build_parser", "config_from_args", "main"]

if __name__ == "__main__":
    sys.exit(main())
