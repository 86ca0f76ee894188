"""Tests of ifr/data/build.py on the tiny dataset."""

import logging

import pytest

from ifr.data.build import (
    build_ytvis_test_loader,
    build_ytvis_train_loader,
    filter_videos_without_instances,
    get_ytvis_dicts,
)


@pytest.fixture
def tiny_cfg(make_cfg):
    return make_cfg(
        overrides={
            "DATASETS.TRAIN": ("ytvis_tiny_train",),
            "SOLVER.IMS_PER_BATCH": 2,
            "DATALOADER.NUM_WORKERS": 0,
            "INPUT.MIN_SIZE_TRAIN": (96,),
            "INPUT.MAX_SIZE_TRAIN": 128,
            "INPUT.MIN_SIZE_TEST": 96,
            "INPUT.MAX_SIZE_TEST": 128,
            "SEED": 5,
        }
    )


def _first_video_ids(loader, num_batches=3):
    iterator = iter(loader)
    return [[sample["video_id"] for sample in next(iterator)] for _ in range(num_batches)]


def test_train_loader_yields_clips_and_is_seeded(tiny_root, tiny_cfg):
    cfg = tiny_cfg
    batch = next(iter(build_ytvis_train_loader(cfg)))
    assert len(batch) == 2
    for sample in batch:
        assert len(sample["image"]) == 2 and len(sample["instances"]) == 2
        assert sample["image"][0].shape == (3, 96, 128)
    assert _first_video_ids(build_ytvis_train_loader(cfg)) == _first_video_ids(
        build_ytvis_train_loader(cfg)
    )


def test_test_loader_gives_every_video_once_in_order(tiny_root, tiny_cfg):
    loader = build_ytvis_test_loader(tiny_cfg, "ytvis_tiny_val")
    batches = list(loader)
    assert all(len(batch) == 1 for batch in batches)
    expected = [d["video_id"] for d in get_ytvis_dicts("ytvis_tiny_val")]
    assert [b[0]["video_id"] for b in batches] == expected
    assert all(len(b[0]["image"]) == b[0]["length"] and "instances" not in b[0] for b in batches)


def test_get_ytvis_dicts_concatenates_and_checks_names(tiny_root):
    both = get_ytvis_dicts(["ytvis_tiny_train", "ytvis_tiny_val"])
    train, val = get_ytvis_dicts("ytvis_tiny_train"), get_ytvis_dicts("ytvis_tiny_val")
    assert [d["video_id"] for d in both] == [d["video_id"] for d in train + val]
    with pytest.raises(KeyError, match="no_such_dataset"):
        get_ytvis_dicts(["no_such_dataset"])


def test_videos_without_instances_are_filtered_with_a_count(caplog):
    dicts = [
        {"video_id": 1, "annotations": [[], [{"id": 1}]]},
        {"video_id": 2, "annotations": [[], []]},
        {"video_id": 3, "annotations": [[]]},
    ]
    with caplog.at_level(logging.INFO, logger="ifr.data.build"):
        kept = filter_videos_without_instances(dicts)
    assert [d["video_id"] for d in kept] == [1]
    assert "Removed 2 of 3 videos without instances" in caplog.text
    with pytest.raises(ValueError, match="No video"):
        filter_videos_without_instances(dicts[1:])


def test_a_training_dataset_without_annotations_is_refused_naming_it():
    from detectron2.data import DatasetCatalog, MetadataCatalog

    name = "test_split_without_annotations"
    video = {"video_id": 1, "file_names": ["a.jpg"], "length": 1, "height": 4, "width": 4}
    DatasetCatalog.register(name, lambda: [dict(video)])
    MetadataCatalog.get(name).set(json_file="test.json")
    try:
        assert len(get_ytvis_dicts(name)) == 1  # fine for evaluation
        with pytest.raises(ValueError, match=rf"'{name}' \(DATASETS.TRAIN, test.json\) has no"):
            get_ytvis_dicts(name, for_training=True)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
