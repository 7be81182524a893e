"""Argument grammar shared by every ``visionkit`` subcommand.

Users write ``visionkit <task> <mode> key=value ...`` (Ultralytics' grammar) or
``--key value``; both reach argparse as ``--key value``. Options the user did not set
are left out of the parsed namespace (``argparse.SUPPRESS``), so every default lives
once, in the library function the command calls.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

_KEY_VALUE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$", re.DOTALL)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are a single line and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def to_flags(argv: Sequence[str]) -> list[str]:
    """Rewrite ``key=value`` tokens as ``--key=value``; leave every other token alone.

    A token right after a bare ``--key`` is that flag's value and is never rewritten, so
    ``--name run=1`` keeps ``run=1`` as the name.

    Example:
        >>> to_flags(["data", "make", "format=yolo", "--seed", "3"])
        ['data', 'make', '--format=yolo', '--seed', '3']
    """
    flags: list[str] = []
    for token in argv:
        expects_value = bool(flags) and flags[-1].startswith("--") and "=" not in flags[-1]
        match = _KEY_VALUE.match(token)
        flags.append(
            f"--{match.group(1)}={match.group(2)}" if match and not expects_value else token
        )
    return flags


def parse_bool(text: str) -> bool:
    """Parse ``true/false/yes/no/1/0/on/off`` (any case) into a bool."""
    value = text.strip().lower()
    if value in {"true", "yes", "1", "on"}:
        return True
    if value in {"false", "no", "0", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_amp(text: str) -> bool | str:
    """Parse the ``amp`` setting: ``bf16``, or a bool as :func:`parse_bool` reads it."""
    if text.strip().lower() == "bf16":
        return "bf16"
    try:
        return parse_bool(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected true, false or bf16, got {text!r}") from None


def parse_pair(text: str) -> tuple[float, float]:
    """Parse ``"0.5,1"`` into ``(0.5, 1.0)``."""
    low, _, high = text.partition(",")
    try:
        return float(low), float(high)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers like 0.5,1 got {text!r}") from None


@dataclass(frozen=True)
class Option:
    """One ``key=value`` option of a subcommand.

    Args:
        name: The key (also the keyword argument of the library function).
        help: One line for ``--help``.
        type: Converter from the command-line text.
        choices: Allowed values, if restricted.
        required: Whether the command refuses to run without it.
    """

    name: str
    help: str
    type: Callable[[str], Any] = str
    choices: Sequence[str] | None = None
    required: bool = False


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """Register ``options`` on ``parser`` as ``--name`` flags whose absence leaves no attribute."""
    for option in options:
        parser.add_argument(
            f"--{option.name}",
            type=option.type,
            choices=option.choices,
            required=option.required,
            default=argparse.SUPPRESS,
            help=option.help,
            metavar=option.name.upper(),
        )


def given(namespace: argparse.Namespace, *, drop: Sequence[str] = ()) -> dict[str, Any]:
    """The options the user actually set, minus the parser's own bookkeeping keys."""
    return {k: v for k, v in vars(namespace).items() if k not in {"handler", *drop}}


Handler = Callable[[argparse.Namespace], int]
"""What a mode runs: the parsed options in, the exit status out."""


def add_group(commands: argparse._SubParsersAction, name: str, help: str) -> Any:
    """Add the command group ``name`` (a task or ``data``) and return its modes' subparsers.

    The group alone (``visionkit detect``) prints its help and exits with 2.
    """
    group = commands.add_parser(name, help=help, description=help)
    group.set_defaults(handler=lambda _: group.print_help() or 2)
    return group.add_subparsers(title="modes", metavar="<mode>")


def add_mode(modes: Any, name: str, handler: Handler, help: str, options: Sequence[Option]) -> None:
    """Add the mode ``name`` with its ``key=value`` options, run by ``handler``."""
    parser = modes.add_parser(name, help=help, description=help)
    add_options(parser, options)
    parser.set_defaults(handler=handler)
