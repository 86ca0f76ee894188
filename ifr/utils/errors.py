"""The project's error for bad input from the user.

A file, a flag or a config key that is wrong raises a subclass of :class:`UserInputError`
whose message names the thing at fault and, where there is one, what to do. The tools
(``ifr.engine.cli.run_tool``) print such an error as one ``error: ...`` line; anything
else is a bug and keeps its traceback.
"""

from typing import Optional

__all__ = ["UserInputError", "WorkerFailed"]


class UserInputError(ValueError):
    """Bad input from the user: a malformed file, an unfit checkpoint, a wrong flag or key."""


class WorkerFailed(RuntimeError):
    """The first worker of a multi-process job to fail, with its traceback.

    ``user_message``: the one-line message when the worker failed on bad input (see
    ``ifr.engine.cli``), None when it failed on a bug."""

    def __init__(self, message: str, user_message: Optional[str] = None):
        super().__init__(message)
        self.user_message = user_message
