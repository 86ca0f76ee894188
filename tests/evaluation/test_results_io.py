import json
import os
import zipfile

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util
from ytvis_factory import box, make_gt, rle

from ifr.evaluation.results_io import (
    encode_track,
    instances_to_ytvis_results,
    load_results,
    validate_results,
    write_results,
)
from ifr.evaluation.tracks import video_infos


def _masks():
    # Instance 0: present in frames 0 and 2; instance 1: present in frame 1 only.
    masks = np.zeros((2, 3, 6, 5), dtype=bool)
    masks[0, 0, 1:3, 1:4] = True
    masks[0, 2, 5, 0] = True
    masks[1, 1, 0:6, 4] = True
    return masks


def test_instances_to_results_from_tensor_round_trips():
    masks = _masks()
    output = {
        "image_size": (6, 5),
        "pred_scores": [0.9, 0.2],
        "pred_labels": [0, 3],
        "pred_masks": torch.from_numpy(masks),
    }
    entries = instances_to_ytvis_results(17, output, {0: 1, 3: 40})
    assert [e["category_id"] for e in entries] == [1, 40]
    assert [e["score"] for e in entries] == pytest.approx([0.9, 0.2])
    assert all(e["video_id"] == 17 for e in entries)
    assert entries[0]["segmentations"][1] is None and entries[1]["segmentations"][0] is None
    json.dumps(entries)  # counts are str: JSON-serialisable
    for entry, track in zip(entries, masks):
        for segm, frame in zip(entry["segmentations"], track):
            decoded = np.zeros_like(frame) if segm is None else mask_util.decode(segm).astype(bool)
            np.testing.assert_array_equal(decoded, frame)


def test_instances_to_results_from_rle_lists():
    masks = _masks()
    rles = [mask_util.encode(np.asfortranarray(m.astype(np.uint8))) for m in masks[0]]
    output = {"pred_scores": [0.5], "pred_labels": [0], "pred_masks": [rles]}
    (entry,) = instances_to_ytvis_results(3, output, {0: 5})
    assert entry["segmentations"] == encode_track(masks[0])
    assert entry["segmentations"][1] is None  # empty RLE becomes None


def test_instances_to_results_errors():
    output = {"pred_scores": [0.5], "pred_labels": [2], "pred_masks": [np.zeros((1, 2, 2), bool)]}
    with pytest.raises(KeyError, match="video 4: predicted class 2"):
        instances_to_ytvis_results(4, output, {0: 1})
    with pytest.raises(ValueError, match="must be binary"):
        instances_to_ytvis_results(4, dict(output, pred_masks=[np.ones((1, 2, 2))]), {2: 1})
    with pytest.raises(ValueError, match=r"must be \(T, H, W\)"):
        instances_to_ytvis_results(4, dict(output, pred_masks=[np.ones((2, 2), bool)]), {2: 1})
    with pytest.raises(ValueError, match="video 4: 1 pred_scores, 1 pred_labels and 0"):
        instances_to_ytvis_results(4, dict(output, pred_masks=[]), {2: 1})


def test_write_results_json_and_zip_round_trip(tmp_path):
    entries = [
        {
            "video_id": 1,
            "score": 0.5,
            "category_id": 2,
            "segmentations": [rle(box(4, 4, 0, 2, 0, 2)), None],
        }
    ]
    json_path, zip_path = write_results(entries, str(tmp_path / "out"))
    assert load_results(json_path) == entries
    assert load_results(zip_path) == entries
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.namelist() == ["results.json"]  # at the root, no sub-folder
    assert sorted(os.listdir(tmp_path / "out")) == ["results.json", "results.zip"]  # no temp files


def test_load_results_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: results file is not valid JSON"):
        load_results(str(bad))
    bad.write_text('{"a": 1}')
    with pytest.raises(ValueError, match="must be a JSON list"):
        load_results(str(bad))
    nested = tmp_path / "nested.zip"
    with zipfile.ZipFile(nested, "w") as zf:
        zf.writestr("sub/results.json", "[]")
    with pytest.raises(ValueError, match="results.json at its root"):
        load_results(str(nested))
    with pytest.raises(ValueError, match="missing.json: results file not found"):
        load_results(str(tmp_path / "missing.json"))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda e: e.pop("score"), r"entry 1 \(video 1\): missing key\(s\) \['score'\]"),
        (lambda e: e.update(video_id=5), "entry 1 .*video id 5 is not in the ground truth"),
        (lambda e: e.update(video_id="2"), "entry 1 .video .2..: .video_id. must be an int"),
        (lambda e: e.update(score="high"), "'score' must be a finite number"),
        (lambda e: e.update(score=float("nan")), "'score' must be a finite number"),
        (lambda e: e.update(category_id=1.5), "'category_id' must be an int"),
        (lambda e: e.update(category_id=9), "'category_id' 9 is not a ground-truth category"),
        (
            lambda e: e.update(segmentations=[None]),
            "'segmentations' has 1 frames, the ground truth's video 1 has 2",
        ),
        (
            lambda e: e["segmentations"].__setitem__(0, {"size": [3, 4]}),
            "frame 0: a segmentation must be None or",
        ),
        (
            lambda e: e["segmentations"].__setitem__(0, rle(np.ones((3, 3), bool))),
            r"entry 1 \(video 1\), frame 0: RLE size \[3, 3\], the video is \[4, 4\]",
        ),
        # The counts of a 2x2 mask declared 4x4 (pycocotools would read past them).
        (
            lambda e: e["segmentations"].__setitem__(
                1, dict(rle(np.ones((2, 2), bool)), size=[4, 4])
            ),
            r"entry 1 \(video 1\), frame 1: RLE 'counts' cover 4 pixels, its size \[4, 4\]",
        ),
        (
            lambda e: e["segmentations"].__setitem__(
                1, {"size": [4, 4], "counts": "@@@@garbage!!"}
            ),
            r"frame 1: 'counts' has a character 'r' outside",
        ),
        (
            lambda e: e["segmentations"].__setitem__(1, {"size": [4, 4], "counts": [16]}),
            "frame 1: RLE 'counts' must be a compressed str",
        ),
    ],
)
def test_validate_results_names_the_bad_entry(change, message):
    gt = make_gt([(1, 4, 4, 2)], [])
    good = {"video_id": 1, "score": 0.5, "category_id": 1, "segmentations": [None, None]}
    bad = json.loads(json.dumps(good))
    change(bad)
    validate_results([good], video_infos(gt), {1, 2})
    with pytest.raises(ValueError, match=message):
        validate_results([good, bad], video_infos(gt), {1, 2})
