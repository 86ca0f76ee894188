"""The command-line boundary every tool shares.

Bad input (a malformed dataset, an unsafe or unfit checkpoint, a config key or type, a
missing file, a wrong flag) ends the tool with one line on stderr, ``error: <what and
where>``, and exit status 1 (2 for a wrong flag). Anything else is a bug and keeps its
traceback. ``--traceback`` anywhere on the command line, or ``IFR_TRACEBACK=1``, shows the
traceback of bad input too.

    if __name__ == "__main__":
        sys.exit(run_tool(main))          # main(argv) -> exit status (or None)
"""

import argparse
import os
import sys
from typing import Any, Callable, List, Optional, Sequence

from ..data.datasets.ytvis import YTVISFormatError
from ..utils.errors import UserInputError, WorkerFailed

TRACEBACK_FLAG = "--traceback"
TRACEBACK_ENV = "IFR_TRACEBACK"
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # as a shell reports a process ended by Ctrl-C (128 + SIGINT)


class UsageError(UserInputError):
    """A wrong command-line flag or value (what argparse reports)."""


def is_user_error(error: BaseException) -> bool:
    """Bad input the user can fix, reported as one line (not a bug)."""
    return isinstance(error, (UserInputError, YTVISFormatError, FileNotFoundError))


def one_line(error: BaseException) -> str:
    """The error's message on one line (a KeyError's message without its quotes)."""
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    text = " ".join(str(text).split())
    return text or type(error).__name__


def raise_on_argparse_error(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make ``parser`` raise UsageError instead of printing usage and exiting, so that a
    wrong flag is one ``error:`` line like any other bad input."""

    def error(message: str):
        raise UsageError(f"{parser.prog}: {message} (see --help)")

    parser.error = error
    return parser


def wants_traceback(argv: Sequence[str]) -> bool:
    return TRACEBACK_FLAG in argv or os.environ.get(TRACEBACK_ENV, "") not in ("", "0")


def run_tool(main: Callable[[List[str]], Any], argv: Optional[Sequence[str]] = None) -> int:
    """Runs ``main(argv)`` (``sys.argv[1:]`` by default, ``--traceback`` removed) and
    returns the exit status: ``main``'s integer result, 0 for None, 1 for bad input (2 for
    a wrong flag), printed as one ``error:`` line unless a traceback was asked for."""
    argv = list(sys.argv[1:] if argv is None else argv)
    show_traceback = wants_traceback(argv)
    argv = [arg for arg in argv if arg != TRACEBACK_FLAG]
    try:
        status = main(argv)
    except KeyboardInterrupt as interrupt:  # Ctrl-C, or a stop signal the launcher passed on
        print(f"interrupted{f' ({interrupt})' if str(interrupt) else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001  (bugs are re-raised below)
        message = user_error_message(error)
        if message is None or show_traceback:
            raise
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE if isinstance(error, UsageError) else EXIT_ERROR
    return status if isinstance(status, int) else 0


def user_error_message(error: BaseException) -> Optional[str]:
    """One line for bad input (also when a worker process of a multi-process run failed on
    it), None for a bug."""
    if isinstance(error, WorkerFailed):
        return error.user_message
    return one_line(error) if is_user_error(error) else None
