"""The subcommands of ``fcdd``: each module here registers itself with ``fcdd.commands.base.command``."""

from fcdd.commands.base import COMMANDS, add_config_flags, command, config_from_args
from fcdd.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = ["COMMANDS", "add_config_flags", "command", "config_from_args"]
