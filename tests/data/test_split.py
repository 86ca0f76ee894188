"""Tests of ifr/data/split.py and tools/split_ytvis.py."""

import json
import os

import pytest
from ytvis_test_utils import write_json

from ifr.data.datasets import YTVISFormatError, load_ytvis_json
from ifr.data.split import split_ytvis_json

NUM_VIDEOS = 12


def _train_data():
    videos = [
        {"id": i, "file_names": [f"v{i}/0.jpg"], "height": 4, "width": 4, "length": 1}
        for i in range(1, NUM_VIDEOS + 1)
    ]
    annotations = [
        {
            "id": 100 + 2 * i + k,
            "video_id": i,
            "category_id": 1 + i % 2,
            "iscrowd": 0,
            "segmentations": [{"size": [4, 4], "counts": [0, 16]}],
            "bboxes": [[0, 0, 4, 4]],
            "areas": [16],
        }
        for i in range(1, NUM_VIDEOS + 1)
        for k in range(2)
    ]
    return {
        "info": {"year": 2019},
        "licenses": [],
        "videos": videos,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }


@pytest.fixture
def train_json(tmp_path):
    return write_json(tmp_path / "train.json", _train_data())


def _video_ids(path):
    with open(path) as f:
        data = json.load(f)
    return {v["id"] for v in data["videos"]}, data


def test_split_sizes_disjoint_and_complete(train_json, tmp_path):
    train_path, val_path = split_ytvis_json(train_json, str(tmp_path / "out"), num_val=4, seed=3)
    train_ids, train = _video_ids(train_path)
    val_ids, val = _video_ids(val_path)
    assert len(train_ids) == NUM_VIDEOS - 4 and len(val_ids) == 4
    assert not train_ids & val_ids and train_ids | val_ids == set(range(1, NUM_VIDEOS + 1))
    for ids, data in ((train_ids, train), (val_ids, val)):
        assert {a["video_id"] for a in data["annotations"]} == ids
        assert len(data["annotations"]) == 2 * len(ids)
        assert data["categories"] == _train_data()["categories"]
        assert data["info"] == {"year": 2019}
    # Both outputs are valid YouTube-VIS files with ground truth.
    dicts = load_ytvis_json(val_path, str(tmp_path), check_frame_files=False)
    assert len(dicts) == 4 and all(len(d["annotations"][0]) == 2 for d in dicts)
    assert sorted(os.listdir(tmp_path / "out")) == ["train_sub.json", "val_sub.json"]


def test_split_is_determined_by_the_seed(train_json, tmp_path):
    first = _video_ids(split_ytvis_json(train_json, str(tmp_path / "a"), 4, seed=0)[1])[0]
    again = _video_ids(split_ytvis_json(train_json, str(tmp_path / "b"), 4, seed=0)[1])[0]
    others = [
        _video_ids(split_ytvis_json(train_json, str(tmp_path / f"s{s}"), 4, seed=s)[1])[0]
        for s in range(1, 4)
    ]
    assert first == again
    assert any(o != first for o in others)


@pytest.mark.parametrize("num_val", [0, NUM_VIDEOS, NUM_VIDEOS + 1])
def test_impossible_sizes_are_refused(train_json, tmp_path, num_val):
    with pytest.raises(ValueError, match="num_val"):
        split_ytvis_json(train_json, str(tmp_path), num_val=num_val)


def test_test_split_without_ground_truth_is_refused(tmp_path):
    data = _train_data()
    del data["annotations"]
    with pytest.raises(YTVISFormatError, match="annotations"):
        split_ytvis_json(write_json(tmp_path / "test.json", data), str(tmp_path), 2)


def test_command_line_tool_writes_next_to_the_input(train_json, tmp_path, capsys, load_tool):
    load_tool("split_ytvis").main([train_json, "--num-val", "5", "--seed", "1"])
    assert len(_video_ids(tmp_path / "val_sub.json")[0]) == 5
    assert "val_sub.json" in capsys.readouterr().out


@pytest.mark.parametrize(
    "how,fragment",
    [
        ("duplicate_video_id", "video id 3, key 'id': duplicate video id"),
        ("duplicate_annotation_id", "video id 5, key 'id': duplicate annotation id 106"),
    ],
)
def test_duplicate_ids_are_refused(tmp_path, how, fragment):
    data = _train_data()
    if how == "duplicate_video_id":
        data["videos"][3]["id"] = 3
    else:
        data["annotations"][8]["id"] = 106  # annotation 106 is in video 3
    path = write_json(tmp_path / "train.json", data)
    with pytest.raises(YTVISFormatError, match=fragment):
        split_ytvis_json(path, str(tmp_path / "out"), 2)
    assert not os.path.exists(tmp_path / "out")


def test_output_that_is_the_input_is_refused_and_the_input_kept(train_json, tmp_path):
    """The input named train_sub.json in the output folder: it would be overwritten."""
    victim = tmp_path / "train_sub.json"
    os.replace(train_json, victim)
    before = victim.read_bytes()
    with pytest.raises(ValueError, match=r"train_sub.json: it is the input"):
        split_ytvis_json(str(victim), str(tmp_path), num_val=1)
    assert victim.read_bytes() == before and not (tmp_path / "val_sub.json").exists()
