"""Tests of ifr/data/datasets/ytvis.py: format of the dataset dicts and early, precise
errors on malformed input."""

import copy
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from ytvis_test_utils import blank_frames, write_frames, write_json

from ifr.data.datasets import YTVISFormatError, load_ytvis_json, register_ytvis_instances

H, W = 8, 10


def _rle(y0, y1, x0, x1):
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 1
    rle = mask_util.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _valid_data(image_root):
    """Two 3-frame videos (ids 11, 4); categories with non-contiguous ids 3 and 7; track 21
    is absent from frame 1; track 22 (video 4) is only in frame 2."""
    names_a = write_frames(image_root, "vid_a", blank_frames(3, H, W))
    names_b = write_frames(image_root, "vid_b", blank_frames(3, H, W))
    video = {"height": H, "width": W, "length": 3}
    return {
        "videos": [dict(video, id=11, file_names=names_a), dict(video, id=4, file_names=names_b)],
        "categories": [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}],
        "annotations": [
            {
                "id": 21,
                "video_id": 11,
                "category_id": 7,
                "iscrowd": 0,
                "segmentations": [_rle(0, 2, 0, 3), None, _rle(1, 4, 2, 5)],
                "bboxes": [[0, 0, 3, 2], None, [2, 1, 3, 3]],
                "areas": [6, None, 9],
            },
            {
                "id": 22,
                "video_id": 4,
                "category_id": 3,
                "iscrowd": 0,
                "segmentations": [None, None, _rle(2, 6, 3, 8)],
                "bboxes": [None, None, [3, 2, 5, 4]],
                "areas": [None, None, 20],
            },
        ],
    }


@pytest.fixture
def dataset(tmp_path):
    image_root = str(tmp_path / "JPEGImages")
    return image_root, _valid_data(image_root), str(tmp_path / "train.json")


def test_valid_file_gives_design_format(dataset):
    image_root, data, json_file = dataset
    dicts = load_ytvis_json(write_json(json_file, data), image_root)
    assert [d["video_id"] for d in dicts] == [4, 11]  # sorted by video id
    video = dicts[1]
    assert video["length"] == 3 and (video["height"], video["width"]) == (H, W)
    assert video["file_names"] == [os.path.join(image_root, f"vid_a/{t:05d}.png") for t in range(3)]
    assert [len(frame) for frame in video["annotations"]] == [1, 0, 1]
    obj = video["annotations"][2][0]
    assert obj["id"] == 21
    assert obj["category_id"] == 1  # file id 7 -> contiguous 1 (ids 3, 7 sorted)
    assert obj["bbox"] == [2, 1, 3, 3] and obj["bbox_mode"] == BoxMode.XYWH_ABS
    assert mask_util.decode(obj["segmentation"]).sum() == 9
    assert [len(frame) for frame in dicts[0]["annotations"]] == [0, 0, 1]
    assert dicts[0]["annotations"][2][0]["category_id"] == 0


def test_missing_bbox_is_computed_from_the_mask(dataset):
    image_root, data, json_file = dataset
    del data["annotations"][0]["bboxes"]
    dicts = load_ytvis_json(write_json(json_file, data), image_root)
    assert dicts[1]["annotations"][0][0]["bbox"] == [0.0, 0.0, 3.0, 2.0]


def test_extra_annotation_keys_are_copied(dataset):
    image_root, data, json_file = dataset
    data["annotations"][0]["note"] = "kept"
    dicts = load_ytvis_json(write_json(json_file, data), image_root, extra_annotation_keys=["note"])
    assert dicts[1]["annotations"][0][0]["note"] == "kept"


def test_test_split_without_annotations_loads(dataset):
    image_root, data, json_file = dataset
    del data["annotations"]
    dicts = load_ytvis_json(write_json(json_file, data), image_root)
    assert len(dicts) == 2 and all("annotations" not in d for d in dicts)


def test_dataset_name_without_mapping_gets_metadata_from_file(dataset):
    image_root, data, json_file = dataset
    name = "_test_ytvis_custom"
    register_ytvis_instances(name, {}, write_json(json_file, data), image_root)
    try:
        DatasetCatalog.get(name)
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == ["three", "seven"]
        assert meta.thing_dataset_id_to_contiguous_id == {3: 0, 7: 1}
        assert meta.evaluator_type == "ytvis" and meta.json_file == json_file
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _break(data, how):
    data = copy.deepcopy(data)
    ann = data["annotations"][0]
    if how == "missing_videos":
        del data["videos"]
        return data, None, "videos"
    if how == "video_without_file_names":
        del data["videos"][0]["file_names"]
        return data, 11, "file_names"
    if how == "length_differs_from_file_names":
        data["videos"][0]["length"] = 4
        return data, 11, "file_names"
    if how == "duplicate_video_id":
        data["videos"][1]["id"] = 11
        return data, 11, "id"
    if how in ("segmentations", "bboxes", "areas"):
        ann[how] = ann[how][:2]
        return data, 11, how
    if how == "unknown_category":
        ann["category_id"] = 99
        return data, 11, "category_id"
    if how == "unknown_video":
        ann["video_id"] = 1234
        return data, 1234, "video_id"
    if how == "annotation_without_category":
        del ann["category_id"]
        return data, 11, "category_id"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "missing_videos",
        "video_without_file_names",
        "length_differs_from_file_names",
        "duplicate_video_id",
        "segmentations",
        "bboxes",
        "areas",
        "unknown_category",
        "unknown_video",
        "annotation_without_category",
    ],
)
def test_malformed_input_names_file_video_and_key(dataset, how):
    image_root, data, json_file = dataset
    data, video_id, key = _break(data, how)
    with pytest.raises(YTVISFormatError) as info:
        load_ytvis_json(write_json(json_file, data), image_root)
    message = str(info.value)
    assert json_file in message
    assert f"'{key}'" in message
    if video_id is not None:
        assert f"video id {video_id}" in message
    assert info.value.video_id == video_id and info.value.key == key
    assert isinstance(info.value, ValueError)


def test_broken_json_names_the_file(tmp_path):
    json_file = tmp_path / "broken.json"
    json_file.write_text('{"videos": [')
    with pytest.raises(YTVISFormatError, match="broken.json: annotation file is not valid JSON"):
        load_ytvis_json(str(json_file), str(tmp_path))


def test_missing_frame_file_names_the_video_and_path(dataset):
    image_root, data, json_file = dataset
    missing = os.path.join(image_root, "vid_b", "00001.png")
    os.remove(missing)
    with pytest.raises(YTVISFormatError) as info:
        load_ytvis_json(write_json(json_file, data), image_root)
    assert "video id 4" in str(info.value) and missing in str(info.value)
    assert info.value.key == "file_names"
    # The check can be skipped (e.g. for json-only tools).
    assert len(load_ytvis_json(json_file, image_root, check_frame_files=False)) == 2


def test_category_outside_a_builtin_table_is_refused(dataset):
    image_root, data, json_file = dataset
    data["categories"].append({"id": 41, "name": "not_in_ytvis"})
    with pytest.raises(YTVISFormatError, match="ytvis_2019_train"):
        load_ytvis_json(write_json(json_file, data), image_root, "ytvis_2019_train")


def test_missing_json_names_the_file(tmp_path):
    missing = str(tmp_path / "ytvis_2019" / "train.json")
    with pytest.raises(YTVISFormatError, match="train.json: annotation file not found"):
        load_ytvis_json(missing, str(tmp_path))
