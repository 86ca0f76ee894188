"""Atomic writes, for every file that matters (checkpoints, results, manifests, splits): a
reader, or a run killed at any moment, sees the old file or the new one, never half of one.
Write to a temporary file in the same folder, then ``os.replace``."""

import contextlib
import json
import os
import tempfile
from typing import IO, Any, Iterator, Optional


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w") -> Iterator[IO]:
    """Opens a temporary sibling of ``path`` for writing; renames it over ``path`` on
    success, deletes it on error."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the mode open() would (0644 under
        # the usual umask 022), so that others can read checkpoints and results.
        os.chmod(tmp_path, 0o666 & ~_current_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_path)
        raise


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_json(path: str, obj: Any, indent: Optional[int] = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def atomic_torch_save(obj: Any, path: str) -> None:
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
