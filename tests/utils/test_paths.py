"""An output may not be an input: the same path, a symbolic link to it, or a hard link."""

import os

import pytest

from ifr.utils.paths import OutputIsInputError, check_output_is_not_input, same_file


def test_same_file_by_path_symlink_and_hard_link(tmp_path):
    original = tmp_path / "gt.json"
    original.write_text("{}")
    os.symlink(original, tmp_path / "soft.json")
    os.link(original, tmp_path / "hard.json")
    (tmp_path / "other.json").write_text("{}")
    for alias in ("gt.json", "soft.json", "hard.json", "./gt.json"):
        assert same_file(str(tmp_path / alias), str(original))
    assert not same_file(str(tmp_path / "other.json"), str(original))
    assert not same_file(str(tmp_path / "new.json"), str(original))  # does not exist yet


def test_check_names_the_input_it_would_overwrite(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text("{}")
    os.link(gt, tmp_path / "hard.json")
    inputs = {"--annotations": str(gt), "--results": str(tmp_path / "r.json")}
    with pytest.raises(OutputIsInputError, match=r"--output .*hard.json: it is --annotations"):
        check_output_is_not_input("--output", str(tmp_path / "hard.json"), inputs)
    check_output_is_not_input("--output", str(tmp_path / "metrics.json"), inputs)  # fine
