"""Tests of ifr/data/tiny.py: deterministic, atomic generation and the content that makes
identity switches possible (absent frames, same-category pairs, occlusion, edge crossing)."""
import hashlib
import json
import multiprocessing
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from ifr.data.tiny import HEIGHT, TINY_SPLITS, WIDTH, generate_tiny_ytvis

SMALL = {"num_videos": 3, "num_frames": 5, "seed": 7}


def _tree_digest(folder):
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            digest.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def test_generation_is_byte_identical(tmp_path):
    generate_tiny_ytvis(str(tmp_path / "a"), "train", **SMALL)
    generate_tiny_ytvis(str(tmp_path / "b"), "train", **SMALL)
    generate_tiny_ytvis(str(tmp_path / "c"), "train", **dict(SMALL, seed=8))
    digest_a = _tree_digest(tmp_path / "a")
    assert digest_a == _tree_digest(tmp_path / "b")
    assert digest_a != _tree_digest(tmp_path / "c")
    assert os.listdir(tmp_path / "a") == ["train"]  # no temporary folder left behind


def test_cache_is_reused_and_other_parameters_refused(tmp_path):
    image_root, json_file = generate_tiny_ytvis(str(tmp_path), "val", **SMALL)
    mtime = os.path.getmtime(json_file)
    assert generate_tiny_ytvis(str(tmp_path), "val", **SMALL) == (image_root, json_file)
    assert os.path.getmtime(json_file) == mtime
    with pytest.raises(RuntimeError, match="delete"):
        generate_tiny_ytvis(str(tmp_path), "val", **dict(SMALL, num_videos=4))


def _generate_in_child(root):
    generate_tiny_ytvis(root, "train", **SMALL)


def test_two_processes_generating_at_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_generate_in_child, args=(str(tmp_path),)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert os.listdir(tmp_path) == ["train"]
    expected = tmp_path / "expected"
    generate_tiny_ytvis(str(expected), "train", **SMALL)
    assert _tree_digest(tmp_path / "train") == _tree_digest(expected / "train")


@pytest.fixture(scope="module")
def tiny_train(tiny_root):
    return DatasetCatalog.get("ytvis_tiny_train")


def test_registered_splits_load_with_expected_counts(tiny_root, tiny_train):
    val = DatasetCatalog.get("ytvis_tiny_val")
    for dicts, split in ((tiny_train, "train"), (val, "val")):
        assert len(dicts) == TINY_SPLITS[split]["num_videos"]
        assert all(d["length"] == TINY_SPLITS[split]["num_frames"] for d in dicts)
        assert all((d["height"], d["width"]) == (HEIGHT, WIDTH) for d in dicts)
        assert all(os.path.isfile(f) for d in dicts for f in d["file_names"])
    meta = MetadataCatalog.get("ytvis_tiny_train")
    assert meta.thing_classes == ["striped_disc", "checkered_square", "dotted_triangle"]
    assert meta.evaluator_type == "ytvis"
    assert meta.json_file == os.path.join(tiny_root, "train", "instances.json")
    assert os.path.isfile(meta.json_file)


def _tracks(video):
    """track id -> (category, [mask or None per frame])."""
    tracks = {}
    for t, frame in enumerate(video["annotations"]):
        for obj in frame:
            masks = tracks.setdefault(obj["id"], (obj["category_id"], [None] * video["length"]))[1]
            masks[t] = mask_util.decode(obj["segmentation"]).astype(bool)
    return tracks


def test_every_category_appears(tiny_train):
    categories = {obj["category_id"] for v in tiny_train for f in v["annotations"] for obj in f}
    assert categories == {0, 1, 2}


def test_identity_switch_cases_are_present(tiny_train):
    absent_somewhere = same_category_pair = edge_crossing = occlusion = 0
    for video in tiny_train:
        tracks = _tracks(video)
        categories = [c for c, _ in tracks.values()]
        same_category_pair += len(categories) != len(set(categories))
        for _, masks in tracks.values():
            present = [m is not None for m in masks]
            absent_somewhere += not all(present)
            # Entering or leaving: absent at one end, touching the border next to it.
            if not present[0] and present[1] and _touches_border(masks[1]):
                edge_crossing += 1
            if not present[-1] and present[-2] and _touches_border(masks[-2]):
                edge_crossing += 1
        occlusion += _has_occlusion(tracks)
    assert absent_somewhere > 0 and same_category_pair > 0 and edge_crossing > 0
    assert occlusion > 0


def _touches_border(mask):
    return mask[:, 0].any() or mask[:, -1].any() or mask[0].any() or mask[-1].any()


def _has_occlusion(tracks):
    """Two tracks whose visible masks touch while one of them is smaller than its largest
    extent in the video (it is partly hidden behind the other)."""
    for _, masks in tracks.values():
        areas = [m.sum() if m is not None else 0 for m in masks]
        for t, mask in enumerate(masks):
            if mask is not None and 0 < areas[t] < 0.7 * max(areas) and not _touches_border(mask):
                return True
    return False


def test_visible_masks_never_overlap(tiny_train):
    for video in tiny_train[:8]:
        for frame in video["annotations"]:
            masks = [mask_util.decode(obj["segmentation"]).astype(int) for obj in frame]
            if masks:
                assert np.sum(masks, axis=0).max() <= 1


def test_cache_of_another_generator_version_is_replaced(tmp_path):
    image_root, json_file = generate_tiny_ytvis(str(tmp_path), "train", **SMALL)
    with open(json_file) as f:
        data = json.load(f)
    data["info"]["generator_version"] = -1
    with open(json_file, "w") as f:
        json.dump(data, f)
    generate_tiny_ytvis(str(tmp_path), "train", **SMALL)
    expected = tmp_path / "expected"
    generate_tiny_ytvis(str(expected), "train", **SMALL)
    assert _tree_digest(tmp_path / "train") == _tree_digest(expected / "train")
    assert sorted(os.listdir(tmp_path)) == ["expected", "train"]
