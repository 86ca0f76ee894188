"""ifr/utils/json_io.py: one error naming the file for each way a JSON file can be bad."""

import pytest

from ifr.utils.json_io import JSONFileError, parse_json, read_json


def test_reads_an_object(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"videos": []}')
    assert read_json(str(path)) == {"videos": []}
    assert read_json(str(path), top_level=None) == {"videos": []}


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "ground truth not found"),
        (b"\xff\xfe\x00garbage", "ground truth is not UTF-8 text"),
        (b'{"videos": [', "ground truth is not valid JSON"),
        (b"[1, 2]", "ground truth must be a JSON object, got a list"),
        (b"null", "ground truth must be a JSON object, got null"),
    ],
)
def test_bad_file_gives_one_error_naming_it(tmp_path, content, message):
    path = tmp_path / "gt.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(JSONFileError, match=message) as info:
        read_json(str(path), what="ground truth")
    assert str(info.value).startswith(f"{path}: ")
    assert isinstance(info.value, ValueError)


def test_folder_and_list_top_level(tmp_path):
    with pytest.raises(JSONFileError, match="is a folder"):
        read_json(str(tmp_path))
    assert parse_json(b"[1]", "x.zip:results.json", top_level=list) == [1]
    with pytest.raises(JSONFileError, match="x: results must be a JSON list, got an object"):
        parse_json("{}", "x", what="results", top_level=list)
