"""Output paths checked before any work: an output may not be one of the inputs (the same
file, also through a symbolic or hard link), so a tool never overwrites what it reads, and
an output folder must be a folder the tool can write (or create)."""

import os
from typing import Mapping

from .errors import UserInputError

__all__ = [
    "OutputFolderError",
    "OutputIsInputError",
    "check_output_folder",
    "check_output_is_not_input",
    "same_file",
]


class OutputIsInputError(UserInputError):
    """An output path that names one of the inputs."""


class OutputFolderError(UserInputError):
    """An output folder that is a file, or that cannot be written or created."""


def check_output_folder(name: str, folder: str) -> None:
    """Raise :class:`OutputFolderError` naming ``name`` (a flag or key) unless ``folder`` is
    a writable folder or can be created: the nearest existing ancestor must be a writable
    folder."""
    path = os.path.abspath(folder)
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputFolderError(f"{name} '{folder}' is a file, not a folder")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise OutputFolderError(f"{name} '{folder}': '{existing}' is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputFolderError(f"{name} '{folder}': '{existing}' is not writable")


def same_file(a: str, b: str) -> bool:
    """Whether the paths name one file: the same path after resolving links, or, when both
    exist, the same inode (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def check_output_is_not_input(output_flag: str, output: str, inputs: Mapping[str, str]) -> None:
    """Raise :class:`OutputIsInputError` when ``output`` is one of ``inputs`` (flag or
    argument name -> path)."""
    for input_flag, path in inputs.items():
        if path and same_file(output, path):
            raise OutputIsInputError(
                f"{output_flag} {output}: it is {input_flag} ({path}) and would be "
                "overwritten; write to another file"
            )
