"""Bad input is refused when a dataset is loaded (or its loader built), with one line naming
the json file, the video id and the key or frame at fault: one table row per malformed
input and the fragment of the error it must give."""

import copy
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog, detection_utils
from PIL import Image
from ytvis_test_utils import blank_frames, write_frames, write_json

from ifr.data import get_ytvis_dicts, register_ytvis_instances
from ifr.data.datasets import YTVISFormatError, load_ytvis_json
from ifr.data.datasets.frame_headers import check_frame_headers, read_frame_size
from ifr.data.split import split_ytvis_json

H, W = 8, 10


def _rle(y0, y1, x0, x1, height=H, width=W):
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = 1
    rle = mask_util.encode(np.asfortranarray(mask))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _valid_data(image_root):
    """Video 11 (tracks 21, 23) and video 4 (track 22), 3 frames each, 8x10 PNG frames."""
    names_a = write_frames(image_root, "vid_a", blank_frames(3, H, W))
    names_b = write_frames(image_root, "vid_b", blank_frames(3, H, W))
    video = {"height": H, "width": W, "length": 3}

    def track(ann_id, video_id, category_id):
        return {
            "id": ann_id,
            "video_id": video_id,
            "category_id": category_id,
            "iscrowd": 0,
            "segmentations": [_rle(0, 2, 0, 3), None, _rle(1, 4, 2, 5)],
        }

    return {
        "videos": [dict(video, id=11, file_names=names_a), dict(video, id=4, file_names=names_b)],
        "categories": [{"id": 7, "name": "seven"}, {"id": 3, "name": "three"}],
        "annotations": [track(21, 11, 7), track(23, 11, 3), track(22, 4, 3)],
    }


# ---------------------------------------------------------------- how to break a file


def _set_segmentation(ann_index, frame, value):
    def apply(data, image_root):
        data["annotations"][ann_index]["segmentations"][frame] = value

    return apply


def _set(path, value):
    """Set ``data[path[0]][path[1]]...`` to ``value``."""

    def apply(data, image_root):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return apply


def _write_frame_file(name, content):
    def apply(data, image_root):
        with open(os.path.join(image_root, name), "wb") as f:
            f.write(content)

    return apply


def _write_frame_image(name, height, width):
    def apply(data, image_root):
        Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(os.path.join(image_root, name))

    return apply


def _swap_size(data, image_root):
    data["videos"][1]["height"], data["videos"][1]["width"] = W, H


def _swap_size_of_video_without_masks(data, image_root):
    _swap_size(data, image_root)
    data["annotations"] = [a for a in data["annotations"] if a["video_id"] != 4]


# name, how to break the data, when it is caught, the expected one-line fragment
CASES = [
    (
        "video id as a string",
        _set(["videos", 0, "id"], "11"),
        "load",
        "key 'id': video id '11' is not an integer",
    ),
    (
        "segmentations null",
        _set(["annotations", 0, "segmentations"], None),
        "load",
        "video id 11, key 'segmentations': annotation id 21: must be a list with one entry per "
        "frame, got NoneType",
    ),
    (
        "a video of 0 frames",
        _set(["videos", 1, "file_names"], []),
        "load",
        "video id 4, key 'file_names': a video needs at least one frame",
    ),
    (
        "duplicate annotation id in a video",
        _set(["annotations", 1, "id"], 21),
        "load",
        "video id 11, key 'id': duplicate annotation id 21 (in the same video)",
    ),
    (
        "duplicate annotation id across videos",
        _set(["annotations", 2, "id"], 21),
        "load",
        "video id 4, key 'id': duplicate annotation id 21 (also in video 11)",
    ),
    (
        "annotation id not an integer",
        _set(["annotations", 2, "id"], "22"),
        "load",
        "video id 4, key 'id': annotation id '22' is not an integer",
    ),
    (
        "duplicate video id",
        _set(["videos", 1, "id"], 11),
        "load",
        "video id 11, key 'id': duplicate video id",
    ),
    (
        "height as a string",
        _set(["videos", 0, "height"], "8"),
        "load",
        "video id 11, key 'height': must be a positive integer, got '8'",
    ),
    (
        "width zero",
        _set(["videos", 1, "width"], 0),
        "load",
        "video id 4, key 'width': must be a positive integer, got 0",
    ),
    (
        "no categories",
        _set(["categories"], []),
        "load",
        "key 'categories': must be a non-empty list",
    ),
    (
        "RLE of another size",
        _set_segmentation(0, 2, _rle(0, 1, 0, 1, height=W, width=H)),
        "load",
        "video id 11, key 'segmentations': annotation id 21, frame 2: RLE size [10, 8], "
        "the video is [8, 10]",
    ),
    (
        "RLE counts of a character outside the alphabet",
        _set_segmentation(1, 0, {"size": [H, W], "counts": "0\x7f1"}),
        "load",
        "annotation id 23, frame 0: 'counts' has a character",
    ),
    (
        "RLE counts truncated",
        _set_segmentation(2, 2, {"size": [H, W], "counts": "5n"}),
        "load",
        "video id 4, key 'segmentations': annotation id 22, frame 2: 'counts' is truncated",
    ),
    (
        "RLE counts covering too few pixels",
        _set_segmentation(0, 0, {"size": [H, W], "counts": [10, 20]}),
        "load",
        "annotation id 21, frame 0: RLE 'counts' cover 30 pixels, its size [8, 10] has 80",
    ),
    (
        "RLE counts of floats",
        _set_segmentation(0, 0, {"size": [H, W], "counts": [40.0, 40.0]}),
        "load",
        "annotation id 21, frame 0: uncompressed 'counts' must be a list of ints",
    ),
    (
        "RLE without counts",
        _set_segmentation(0, 0, {"size": [H, W]}),
        "load",
        "annotation id 21, frame 0: an RLE must be a dict with 'size' and 'counts'",
    ),
    (
        "polygon with an odd number of coordinates",
        _set_segmentation(0, 0, [[0, 0, 4, 0, 4, 4, 0]]),
        "load",
        "annotation id 21, frame 0: a polygon has an odd number of coordinates",
    ),
    (
        "segmentation of the wrong type",
        _set_segmentation(0, 0, 5),
        "load",
        "annotation id 21, frame 0: a segmentation must be an RLE dict, polygons or null",
    ),
    (
        "empty frame file",
        _write_frame_file("vid_b/00001.png", b""),
        "headers",
        "video id 4, key 'file_names': frame 1 ({root}/vid_b/00001.png) cannot be read as an image",
    ),
    (
        "text frame file",
        _write_frame_file("vid_a/00002.png", b"not an image\n"),
        "headers",
        "video id 11, key 'file_names': frame 2 ({root}/vid_a/00002.png) cannot be read",
    ),
    (
        "frame of another size",
        _write_frame_image("vid_b/00000.png", H, W + 2),
        "headers",
        "video id 4, key 'file_names': frame 0 ({root}/vid_b/00000.png) is 8x12 (height x "
        "width), the json says 8x10",
    ),
    (
        "height and width swapped in the json",
        _swap_size,
        "load",
        "video id 4, key 'segmentations': annotation id 22, frame 0: RLE size [8, 10], the video "
        "is [10, 8]",
    ),
    (
        "height and width swapped, no masks",
        _swap_size_of_video_without_masks,
        "headers",
        "video id 4, key 'file_names': frame 0 ({root}/vid_b/00000.png) is 8x10 (height x "
        "width), the json says 10x8",
    ),
    (
        "split: duplicate video id",
        _set(["videos", 1, "id"], 11),
        "split",
        "video id 11, key 'id': duplicate video id",
    ),
    (
        "split: duplicate annotation id",
        _set(["annotations", 2, "id"], 23),
        "split",
        "video id 4, key 'id': duplicate annotation id 23 (also in video 11)",
    ),
]


@pytest.mark.parametrize("name,breaker,stage,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_naming_file_video_and_key(
    tmp_path, name, breaker, stage, fragment
):
    image_root = str(tmp_path / "frames")
    data = _valid_data(image_root)
    json_file = str(tmp_path / "train.json")
    # The valid data passes every stage.
    _run_stage(stage, write_json(json_file, data), image_root, tmp_path)
    broken = copy.deepcopy(data)
    breaker(broken, image_root)
    with pytest.raises(YTVISFormatError) as info:
        _run_stage(stage, write_json(json_file, broken), image_root, tmp_path)
    message = str(info.value)
    assert message.startswith(f"{json_file}, ") or message.startswith(f"{json_file}:")
    assert fragment.format(root=image_root) in message
    assert "\n" not in message


def _run_stage(stage, json_file, image_root, tmp_path):
    if stage == "load":
        load_ytvis_json(json_file, image_root)
    elif stage == "headers":
        check_frame_headers(load_ytvis_json(json_file, image_root), json_file, num_threads=2)
    else:
        split_ytvis_json(json_file, str(tmp_path / "out"), num_val=1)


# ---------------------------------------------------------------- around the table


def test_valid_segmentations_are_loaded_as_compressed_rles(tmp_path):
    """Uncompressed RLEs and polygons become compressed RLEs with the same pixels."""
    image_root = str(tmp_path / "frames")
    data = _valid_data(image_root)
    data["annotations"][0]["segmentations"][0] = {"size": [H, W], "counts": [0, 16, 64]}
    data["annotations"][1]["segmentations"][0] = [[0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0]]
    dicts = load_ytvis_json(write_json(str(tmp_path / "a.json"), data), image_root)
    frame = {obj["id"]: obj for obj in dicts[1]["annotations"][0]}
    uncompressed, polygon = frame[21]["segmentation"], frame[23]["segmentation"]
    assert isinstance(uncompressed["counts"], str) and isinstance(polygon["counts"], str)
    expected = np.zeros((H, W), bool)
    expected[:, :2] = True  # 16 ones, column by column: the first two columns
    assert np.array_equal(mask_util.decode(uncompressed).astype(bool), expected)
    assert mask_util.area(polygon) > 0
    assert frame[21]["bbox"] == [0.0, 0.0, 2.0, 8.0]


def test_annotations_without_ids_get_fresh_ones(tmp_path):
    image_root = str(tmp_path / "frames")
    data = _valid_data(image_root)
    del data["annotations"][0]["id"], data["annotations"][2]["id"]
    dicts = load_ytvis_json(write_json(str(tmp_path / "a.json"), data), image_root)
    ids = {obj["id"] for video in dicts for frame in video["annotations"] for obj in frame}
    assert ids == {23, 24, 25}


def test_exif_rotation_is_applied_to_the_header_size(tmp_path):
    """A JPEG stored 10 wide x 8 high with EXIF orientation 6 (turn 90 degrees) reads as
    10 high x 8 wide, as Detectron2's read_image returns it."""
    path = str(tmp_path / "rotated.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(path, exif=exif)
    assert read_frame_size(path) == detection_utils.read_image(path).shape[:2] == (W, H)
    plain = str(tmp_path / "plain.jpg")
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(plain)
    assert read_frame_size(plain) == (H, W)


def test_loader_builders_check_headers_unless_switched_off(tmp_path, make_cfg):
    image_root = str(tmp_path / "frames")
    data = _valid_data(image_root)
    json_file = write_json(str(tmp_path / "train.json"), data)
    _write_frame_file("vid_a/00001.png", b"")(data, image_root)
    name = "_test_bad_frame_headers"
    register_ytvis_instances(name, {}, json_file, image_root)
    try:
        assert make_cfg().DATALOADER.CHECK_FRAME_HEADERS is True
        with pytest.raises(YTVISFormatError, match="video id 11, key 'file_names': frame 1"):
            get_ytvis_dicts(name, check_headers=True)
        assert len(get_ytvis_dicts(name, check_headers=False)) == 2
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_custom_dataset_with_empty_metadata_gets_its_classes_at_registration(tmp_path, make_cfg):
    """The categories are known before any load, so the NUM_CLASSES check sees them."""
    from ifr.engine.defaults import check_datasets_available

    image_root = str(tmp_path / "frames")
    json_file = write_json(str(tmp_path / "train.json"), _valid_data(image_root))
    name = "_test_custom_classes"
    register_ytvis_instances(name, {}, json_file, image_root)
    try:
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == ["three", "seven"]
        assert meta.thing_dataset_id_to_contiguous_id == {3: 0, 7: 1}
        cfg = make_cfg()
        cfg.DATASETS.TRAIN, cfg.DATASETS.TEST = (name,), ()
        with pytest.raises(ValueError, match="2 categories"):
            check_datasets_available(cfg)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_custom_dataset_with_malformed_categories_fails_at_registration(tmp_path):
    json_file = write_json(str(tmp_path / "train.json"), {"videos": [], "categories": [{}]})
    with pytest.raises(YTVISFormatError, match="train.json, key 'categories': a category lacks"):
        register_ytvis_instances("_test_bad_categories", {}, json_file, str(tmp_path))
    assert "_test_bad_categories" not in DatasetCatalog.list()
