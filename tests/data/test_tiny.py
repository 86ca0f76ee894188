"""Tests of ifr/data/tiny.py and ifr/data/tiny_scene.py: deterministic, atomic generation;
the content that makes identity switches possible (absent frames, same-category pairs
crossing, occlusion, edge crossing); per-instance looks in the default splits and one look
per class in the hard splits."""

import hashlib
import json
import multiprocessing
import os

import numpy as np
import pycocotools.mask as mask_util
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from ifr.data.tiny import HEIGHT, TINY_SPLITS, WIDTH, generate_tiny_ytvis, tiny_statistics

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


@pytest.mark.parametrize("appearance", ["distinct", "identical"])
def test_generation_is_byte_identical(tmp_path, appearance):
    small = dict(SMALL, appearance=appearance)
    generate_tiny_ytvis(str(tmp_path / "a"), "train", **small)
    generate_tiny_ytvis(str(tmp_path / "b"), "train", **small)
    generate_tiny_ytvis(str(tmp_path / "c"), "train", **dict(small, seed=8))
    digest_a = _tree_digest(tmp_path / "a")
    assert digest_a == _tree_digest(tmp_path / "b")
    assert digest_a != _tree_digest(tmp_path / "c")
    assert os.listdir(tmp_path / "a") == ["train"]  # no temporary folder left behind


def test_appearances_differ_and_unknown_one_is_refused(tmp_path):
    generate_tiny_ytvis(str(tmp_path / "a"), "train", **SMALL)
    generate_tiny_ytvis(str(tmp_path / "b"), "train", **dict(SMALL, appearance="identical"))
    assert _tree_digest(tmp_path / "a") != _tree_digest(tmp_path / "b")
    with pytest.raises(ValueError, match="appearance"):
        generate_tiny_ytvis(str(tmp_path / "c"), "train", **dict(SMALL, appearance="pastel"))


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


@pytest.fixture(scope="module")
def hard_train(tiny_root):
    return DatasetCatalog.get("ytvis_tiny_hard_train")


def test_split_sizes_resolve_systems_and_keep_splits_apart():
    # Evaluation splits of at least 64 videos (228 tracks), training splits of 256.
    for split in ("val", "hard_val"):
        assert TINY_SPLITS[split]["num_videos"] >= 64
    assert TINY_SPLITS["train"]["num_videos"] == TINY_SPLITS["hard_train"]["num_videos"] == 256
    # Train, val and tune draw from different seeds: no video is in two of them. The hard
    # splits share trajectories with their distinct twins, and differ in looks only.
    assert len({TINY_SPLITS[s]["seed"] for s in ("train", "val", "tune")}) == 3
    for split in ("train", "val", "tune"):
        twin = dict(TINY_SPLITS[f"hard_{split}"], appearance="distinct")
        assert twin == TINY_SPLITS[split]


def test_registered_splits_load_with_expected_counts(tiny_root, tiny_train, hard_train):
    val = DatasetCatalog.get("ytvis_tiny_val")
    hard_val = DatasetCatalog.get("ytvis_tiny_hard_val")
    for dicts, split in (
        (tiny_train, "train"),
        (val, "val"),
        (hard_train, "hard_train"),
        (hard_val, "hard_val"),
        (DatasetCatalog.get("ytvis_tiny_hard_tune"), "hard_tune"),
    ):
        assert len(dicts) == TINY_SPLITS[split]["num_videos"]
        assert all(d["length"] == TINY_SPLITS[split]["num_frames"] for d in dicts)
        assert all((d["height"], d["width"]) == (HEIGHT, WIDTH) for d in dicts)
        assert all(os.path.isfile(f) for d in dicts for f in d["file_names"])
    meta = MetadataCatalog.get("ytvis_tiny_train")
    assert meta.thing_classes == ["striped_disc", "checkered_square", "dotted_triangle"]
    assert meta.evaluator_type == "ytvis"
    assert meta.json_file == os.path.join(tiny_root, "train", "instances.json")
    assert os.path.isfile(meta.json_file)
    hard_meta = MetadataCatalog.get("ytvis_tiny_hard_train")
    assert hard_meta.thing_classes == meta.thing_classes
    assert hard_meta.json_file == os.path.join(tiny_root, "hard_train", "instances.json")


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


# ---------------------------------------------------------------- looks, sizes, crossings


def _mean_colours(video):
    """track id -> (category, mean RGB (3,) of its visible pixels over the video), read
    back from the JPEG frames."""
    sums, counts, categories = {}, {}, {}
    for t, frame in enumerate(video["annotations"]):
        image = np.asarray(Image.open(video["file_names"][t]).convert("RGB"), np.float64)
        for obj in frame:
            mask = mask_util.decode(obj["segmentation"]).astype(bool)
            sums[obj["id"]] = sums.get(obj["id"], 0) + image[mask].sum(axis=0)
            counts[obj["id"]] = counts.get(obj["id"], 0) + mask.sum()
            categories[obj["id"]] = obj["category_id"]
    return {k: (categories[k], sums[k] / counts[k]) for k in sums}


def _same_class_colour_distances(videos):
    distances = []
    for video in videos:
        colours = list(_mean_colours(video).values())
        for i, (cat_i, col_i) in enumerate(colours):
            for cat_j, col_j in colours[i + 1 :]:
                if cat_i == cat_j:
                    distances.append(np.linalg.norm(col_i - col_j))
    return np.array(distances)


def test_same_class_instances_look_different_except_in_the_hard_split(tiny_train, hard_train):
    distinct = _same_class_colour_distances(tiny_train)
    identical = _same_class_colour_distances(hard_train)
    # Every video has a same-class pair: the crossing one.
    assert len(distinct) >= len(tiny_train) and len(identical) >= len(hard_train)
    # Own tint per instance: far apart in mean colour (RGB, 0-255), every pair (over the
    # 256 training videos the closest pair is 13.7 apart, the median pair 53.9), and
    # the typical pair far more apart than the hard split's.
    assert distinct.min() > 12.0
    assert np.median(distinct) > 5 * np.median(identical)
    # One look per class: mean colours differ only by texture phase under the mask,
    # compression and occlusion.
    assert np.median(identical) < 5.0
    assert np.median(identical) * 5 < np.median(distinct)


def _box(mask):
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_objects_are_at_least_24_pixels_across(tiny_train):
    for video in tiny_train:
        for _, masks in _tracks(video).values():
            boxes = [_box(m) for m in masks if m is not None]
            assert max(max(x1 - x0, y1 - y0) for x0, y0, x1, y1 in boxes) >= 24


def _passes(masks_a, masks_b):
    """The two tracks' boxes overlap in a frame, or their centres swap sides along x."""
    sides = []
    for a, b in zip(masks_a, masks_b):
        if a is None or b is None:
            continue
        (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = _box(a), _box(b)
        if ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1:
            return True
        sides.append(np.sign((ax0 + ax1) - (bx0 + bx1)))
    return len(set(sides)) > 1


def test_every_video_has_a_same_class_crossing(tiny_train, hard_train):
    for videos in (tiny_train, hard_train):
        for video in videos:
            tracks = list(_tracks(video).values())
            assert any(
                _passes(ma, mb)
                for i, (ca, ma) in enumerate(tracks)
                for cb, mb in tracks[i + 1 :]
                if ca == cb
            ), video["video_id"]


def test_masks_are_valid(tiny_root, tiny_train):
    """Every mask is an RLE of the frame size, non-empty, and its json bbox and area agree
    with the decoded mask."""
    with open(os.path.join(tiny_root, "train", "instances.json")) as f:
        annotations = json.load(f)["annotations"]
    for ann in annotations:
        for segm, bbox, area in zip(ann["segmentations"], ann["bboxes"], ann["areas"]):
            if segm is None:
                assert bbox is None and area is None
                continue
            assert segm["size"] == [HEIGHT, WIDTH]
            mask = mask_util.decode(segm).astype(bool)
            assert mask.sum() == area > 0
            x0, y0, x1, y1 = _box(mask)
            assert bbox == [x0, y0, x1 - x0, y1 - y0]


def test_statistics_of_a_split(tiny_root, tiny_train):
    stats = tiny_statistics(
        os.path.join(tiny_root, "train", "instances.json"),
        os.path.join(tiny_root, "train", "JPEGImages"),
    )
    counts = [len(_tracks(v)) for v in tiny_train]
    assert stats["videos"] == len(tiny_train)
    assert (stats["instances_per_video_min"], stats["instances_per_video_max"]) == (
        min(counts),
        max(counts),
    )
    assert stats["same_class_pair_share"] > 0 and stats["same_class_instance_share"] > 0.5
    assert stats["object_size_min"] >= 24
    assert stats["same_class_colour_distance_min"] > 12.0
