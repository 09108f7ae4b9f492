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


#: The logging options every subcommand accepts, so ``-v`` works anywhere on the line.
VERBOSE_DEST, LOG_LEVEL_DEST = "verbosity", "log_level"
LOG_LEVELS = ("debug", "info", "warning", "error")


class HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default, unless it has none worth showing (None, a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or default in (None, False, True, argparse.SUPPRESS)
                or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


class _Commands(argparse._SubParsersAction):  # noqa: SLF001 - the one documented hook
    """Subcommands that all take the logging options (``xdna-emu run -vv``)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser = super().add_parser(name, **kwargs)
        add_logging_options(parser, argparse.SUPPRESS)
        return parser


def add_logging_options(parser: argparse.ArgumentParser, default: Any = None) -> None:
    """``-v``/``-vv`` and ``--log-level``; a subcommand's copies default to SUPPRESS so they
    never overwrite what was given before the subcommand name, and count apart (summed in
    :func:`log_level`)."""
    top = default is None
    parser.add_argument("-v", "--verbose", dest=VERBOSE_DEST + ("_top" if top else ""),
                        action="count", default=0 if top else default,
                        help="log more to stderr: -v info, -vv debug")
    parser.add_argument("--log-level", dest=LOG_LEVEL_DEST, choices=LOG_LEVELS, default=default,
                        help="log level on stderr (overrides -v; default: warning)")


def log_level(args: argparse.Namespace, env: dict[str, str]) -> int:
    """The logging level the options ask for: ``--log-level``, else ``-v`` counted anywhere on
    the line, else ``$XDNA_EMU_LOG_LEVEL`` (which a daemon started by a test inherits)."""
    import logging

    name = getattr(args, LOG_LEVEL_DEST, None)
    if name:
        return int(getattr(logging, name.upper()))
    count = getattr(args, VERBOSE_DEST + "_top", 0) + getattr(args, VERBOSE_DEST, 0)
    if count:
        return logging.DEBUG if count > 1 else logging.INFO
    if env.get("XDNA_EMU_DEBUG"):
        return logging.DEBUG
    name = env.get("XDNA_EMU_LOG_LEVEL", "").lower()
    return int(getattr(logging, name.upper())) if name in LOG_LEVELS else logging.WARNING


class Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes raise :class:`UsageError` instead of exiting, whose
    help shows defaults, and whose subcommand slot is called COMMAND in usage and errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.register("action", "parsers", _Commands)

    def add_subparsers(self, **kwargs: Any) -> Any:
        kwargs.setdefault("metavar", "COMMAND")
        kwargs.setdefault("title", "commands")
        return super().add_subparsers(**kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)
