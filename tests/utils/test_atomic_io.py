import os
import stat

import pytest

from ifr.utils.atomic_io import atomic_open, atomic_write_json, atomic_write_text


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_json(str(path), {"AP": 1.0})
    with pytest.raises(RuntimeError):
        with atomic_open(str(path), "w") as f:
            f.write('{"AP": 2')
            raise RuntimeError("killed mid-write")
    assert path.read_text().strip() == '{\n  "AP": 1.0\n}'
    assert os.listdir(tmp_path) == ["metrics.json"]


def test_compact_json_and_missing_folders_are_created(tmp_path):
    path = tmp_path / "a" / "b" / "results.json"
    atomic_write_json(str(path), [1, 2], indent=None)
    assert path.read_text() == "[1, 2]\n"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic_write_text(str(tmp_path / "a.txt"), "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == mode
