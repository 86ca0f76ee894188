"""Tests of ifr/data/datasets/categories.py and the built-in registration."""

import os

import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

from ifr.data.datasets import (
    OVIS_CATEGORIES,
    YTVIS_2019_CATEGORIES,
    YTVIS_2021_CATEGORIES,
    instances_meta,
)


@pytest.mark.parametrize(
    "table,count",
    [(YTVIS_2019_CATEGORIES, 40), (YTVIS_2021_CATEGORIES, 40), (OVIS_CATEGORIES, 25)],
)
def test_table_sizes_ids_names_colors(table, count):
    assert len(table) == count
    assert [c["id"] for c in table] == list(range(1, count + 1))
    assert len({c["name"] for c in table}) == count
    assert len({tuple(c["color"]) for c in table}) == count
    assert all(0 <= v <= 255 for c in table for v in c["color"])


def test_official_names_at_known_ids():
    by_id_2019 = {c["id"]: c["name"] for c in YTVIS_2019_CATEGORIES}
    by_id_2021 = {c["id"]: c["name"] for c in YTVIS_2021_CATEGORIES}
    by_id_ovis = {c["id"]: c["name"] for c in OVIS_CATEGORIES}
    assert (by_id_2019[1], by_id_2019[6], by_id_2019[40]) == ("person", "sedan", "tennis_racket")
    assert (by_id_2021[1], by_id_2021[5], by_id_2021[40]) == ("airplane", "car", "zebra")
    assert (by_id_ovis[1], by_id_ovis[12], by_id_ovis[25]) == ("Person", "Poultry", "Vehical")
    # The 2021 list is not the 2019 one: 2021 drops ape/hand/owl/... and adds bird/car/...
    assert set(by_id_2019.values()) != set(by_id_2021.values())
    assert "sedan" not in by_id_2021.values() and "whale" not in by_id_2019.values()


def test_contiguous_mapping_follows_official_id_order():
    table = [
        {"id": 7, "name": "b", "color": [0, 0, 1]},
        {"id": 3, "name": "a", "color": [0, 0, 2]},
    ]
    meta = instances_meta(table)
    assert meta["thing_dataset_id_to_contiguous_id"] == {3: 0, 7: 1}
    assert meta["thing_classes"] == ["a", "b"]
    assert meta["thing_colors"] == [[0, 0, 2], [0, 0, 1]]


@pytest.mark.parametrize(
    "name,num_classes,json_rel",
    [
        ("ytvis_2019_train", 40, "ytvis_2019/train.json"),
        ("ytvis_2019_val", 40, "ytvis_2019/valid.json"),
        ("ytvis_2019_test", 40, "ytvis_2019/test.json"),
        ("ytvis_2021_train", 40, "ytvis_2021/train.json"),
        ("ytvis_2021_val", 40, "ytvis_2021/valid.json"),
        ("ytvis_2021_test", 40, "ytvis_2021/test.json"),
        ("ytvis_2022_val", 40, "ytvis_2022/valid.json"),
        ("ovis_train", 25, "ovis/annotations_train.json"),
        ("ovis_val", 25, "ovis/annotations_valid.json"),
        ("ovis_test", 25, "ovis/annotations_test.json"),
    ],
)
def test_builtin_registration(name, num_classes, json_rel):
    assert name in DatasetCatalog.list()
    meta = MetadataCatalog.get(name)
    assert len(meta.thing_classes) == num_classes
    assert len(meta.thing_colors) == num_classes
    assert sorted(meta.thing_dataset_id_to_contiguous_id.values()) == list(range(num_classes))
    assert meta.evaluator_type == "ytvis"
    root = os.environ.get("DETECTRON2_DATASETS", "datasets")
    assert meta.json_file == os.path.join(root, json_rel)


def test_2022_val_uses_2021_categories():
    assert MetadataCatalog.get("ytvis_2022_val").thing_classes == [
        c["name"] for c in YTVIS_2021_CATEGORIES
    ]


def test_held_out_splits_appear_only_when_written(tmp_path):
    from ifr.data.datasets import builtin_splits

    assert "ytvis_2019_val_sub" not in builtin_splits(str(tmp_path))
    (tmp_path / "ytvis_2019").mkdir()
    for name in ("train_sub.json", "val_sub.json"):
        (tmp_path / "ytvis_2019" / name).write_text("{}")
    splits = builtin_splits(str(tmp_path))
    assert splits["ytvis_2019_val_sub"] == (
        str(tmp_path / "ytvis_2019/train/JPEGImages"),
        str(tmp_path / "ytvis_2019/val_sub.json"),
    )
    assert "ytvis_2019_train_sub" in splits and "ytvis_2021_val_sub" not in splits
