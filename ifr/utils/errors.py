"""The project's error for bad input from the user.

A file, a flag or a config key that is wrong raises a subclass of :class:`UserInputError`
whose message names the thing at fault and, where there is one, what to do. The tools
(``ifr.engine.cli.run_tool``) print such an error as one ``error: ...`` line; anything
else is a bug and keeps its traceback.
"""

__all__ = ["UserInputError"]


class UserInputError(ValueError):
    """Bad input from the user: a malformed file, an unfit checkpoint, a wrong flag or key."""
