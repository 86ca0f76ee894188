"""Reading JSON files that come from outside (datasets, results, manifests): one clear
error naming the file, whatever is wrong with it."""

import json
import os
from typing import Any, Optional, Tuple, Type, Union

TopLevel = Optional[Union[Type, Tuple[Type, ...]]]

_TYPE_NAMES = {dict: "a JSON object", list: "a JSON list"}


class JSONFileError(ValueError):
    """A JSON file that is missing, unreadable, not JSON or of the wrong shape; the message
    is ``"<source>: <problem>"`` (``source``: the file's path)."""

    def __init__(self, source: str, problem: str):
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


def read_json(path: str, what: str = "JSON file", top_level: TopLevel = dict) -> Any:
    """Parse the JSON file ``path``.

    Args:
        what: what the file is, for the message (e.g. ``"ground-truth file"``).
        top_level: the type(s) the top-level value must have (``None``: any).
    Raises:
        JSONFileError: ``"<path>: <what> ..."`` when the file is missing, a folder,
            unreadable, not UTF-8, not JSON, or its top level is of another type.
    """
    if os.path.isdir(path):
        raise JSONFileError(path, f"{what} is a folder, not a file")
    if not os.path.exists(path):
        raise JSONFileError(path, f"{what} not found")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise JSONFileError(path, f"{what} cannot be read ({e.strerror})") from e
    return parse_json(data, path, what, top_level)


def parse_json(
    data: Union[bytes, str], source: str, what: str = "JSON file", top_level: TopLevel = dict
) -> Any:
    """Parse JSON text (e.g. a member of a zip) read from ``source``; errors as
    :func:`read_json`."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise JSONFileError(
                source, f"{what} is not UTF-8 text (byte {e.start}); not a JSON file?"
            ) from e
    try:
        value = json.loads(data)
    except json.JSONDecodeError as e:
        raise JSONFileError(
            source, f"{what} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"
        ) from e
    if top_level is not None and not isinstance(value, top_level):
        raise JSONFileError(
            source, f"{what} must be {_describe(top_level)}, got {_json_type(value)}"
        )
    return value


def _describe(top_level) -> str:
    types = top_level if isinstance(top_level, tuple) else (top_level,)
    return " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number"
    )
