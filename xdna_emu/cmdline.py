"""What every ``xdna-emu`` subcommand shares: its two error kinds, exit codes and parser.

The subcommands of the main CLI and those a kit registers into it (``xdna-emu fuzz`` and
``xdna-emu trace`` from :mod:`xdna_emu.fuzz.cli`) raise these classes, so there is one
``UsageError`` whichever module runs as ``__main__``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

EXIT_USAGE = 2
EXIT_FAIL = 1
#: Entry-point group through which a kit adds subcommands: each entry is a function
#: ``(subparsers) -> {name: handler}`` (see docs/architecture.md, Layers).
COMMAND_GROUP = "xdna_emu.commands"

Handler = Callable[[argparse.Namespace], int]
AddSubcommands = Callable[[Any], dict[str, Handler]]


class UsageError(Exception):
    """A mistake in how the command was called (exit 2)."""


class Failure(Exception):
    """The command ran but its job failed (exit 1)."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes raise :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)
