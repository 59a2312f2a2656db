"""Extra subcommands: each module here registers itself with ``fcdd.cli.command``."""
