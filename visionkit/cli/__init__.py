"""The ``visionkit`` command: ``visionkit <task> <mode> key=value ...``.

Each command group lives in its own module with a ``register(subparsers)`` that adds
its parsers and points each at a handler ``(namespace) -> int``. Heavy libraries are
imported inside the handlers, so ``visionkit --help`` answers at once. A user mistake
(:class:`~visionkit.errors.VisionKitError`) is printed as one line and exits with 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from visionkit import __version__
from visionkit.cli import classify, data, demo, detect, segment, system, track
from visionkit.cli._parsing import OneLineParser, to_flags
from visionkit.errors import VisionKitError

_GROUPS = (classify, detect, segment, track, data, system, demo)


def build_parser() -> OneLineParser:
    """The top-level parser with every command group registered."""
    parser = OneLineParser(
        prog="visionkit",
        description="Computer vision in one command: visionkit <task> <mode> key=value ...",
    )
    parser.add_argument("--version", action="version", version=f"visionkit {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="<command>")
    for group in _GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    parser = build_parser()
    args = parser.parse_args(to_flags(sys.argv[1:] if argv is None else argv))
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return int(handler(args))
    except VisionKitError as error:
        print(f"visionkit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("visionkit: interrupted", file=sys.stderr)
        return 130
