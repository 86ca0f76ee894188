"""Split table of the built-in datasets and their registration (run by ``import ifr``).

Paths are relative to the datasets root, ``$DETECTRON2_DATASETS`` (default ``datasets``);
the layouts are documented in ``datasets/README.md``. Registration is lazy: nothing is read
until a dataset is used.
"""
import os
from typing import Dict, List, Tuple

from .categories import (
    OVIS_CATEGORIES,
    YTVIS_2019_CATEGORIES,
    YTVIS_2021_CATEGORIES,
    instances_meta,
)
from .ytvis import register_ytvis_instances

# name -> (image root, json file), relative to the datasets root.
YTVIS_2019_SPLITS: Dict[str, Tuple[str, str]] = {
    "ytvis_2019_train": ("ytvis_2019/train/JPEGImages", "ytvis_2019/train.json"),
    "ytvis_2019_val": ("ytvis_2019/valid/JPEGImages", "ytvis_2019/valid.json"),
    "ytvis_2019_test": ("ytvis_2019/test/JPEGImages", "ytvis_2019/test.json"),
}
YTVIS_2021_SPLITS: Dict[str, Tuple[str, str]] = {
    "ytvis_2021_train": ("ytvis_2021/train/JPEGImages", "ytvis_2021/train.json"),
    "ytvis_2021_val": ("ytvis_2021/valid/JPEGImages", "ytvis_2021/valid.json"),
    "ytvis_2021_test": ("ytvis_2021/test/JPEGImages", "ytvis_2021/test.json"),
    # YouTube-VIS 2022 has only a new validation set; its categories are those of 2021.
    "ytvis_2022_val": ("ytvis_2022/valid/JPEGImages", "ytvis_2022/valid.json"),
}
OVIS_SPLITS: Dict[str, Tuple[str, str]] = {
    "ovis_train": ("ovis/train", "ovis/annotations_train.json"),
    "ovis_val": ("ovis/valid", "ovis/annotations_valid.json"),
    "ovis_test": ("ovis/test", "ovis/annotations_test.json"),
}
# Held-out split of a train set (the paper's ablation: 400 videos of YTVIS-2019 train),
# written by tools/split_ytvis.py next to train.json; registered only when present.
HELD_OUT_SPLITS: Dict[str, Tuple[str, str]] = {
    "ytvis_2019_train_sub": ("ytvis_2019/train/JPEGImages", "ytvis_2019/train_sub.json"),
    "ytvis_2019_val_sub": ("ytvis_2019/train/JPEGImages", "ytvis_2019/val_sub.json"),
    "ytvis_2021_train_sub": ("ytvis_2021/train/JPEGImages", "ytvis_2021/train_sub.json"),
    "ytvis_2021_val_sub": ("ytvis_2021/train/JPEGImages", "ytvis_2021/val_sub.json"),
}


def datasets_root() -> str:
    """The folder holding every dataset: ``$DETECTRON2_DATASETS``, default ``datasets``."""
    return os.environ.get("DETECTRON2_DATASETS", "datasets")


def _categories_of(name: str) -> List[Dict]:
    if name.startswith("ovis"):
        return OVIS_CATEGORIES
    if name.startswith("ytvis_2019"):
        return YTVIS_2019_CATEGORIES
    return YTVIS_2021_CATEGORIES


def builtin_splits(root: str) -> Dict[str, Tuple[str, str]]:
    """Every built-in split as name -> (image root, json file) under ``root``; held-out
    splits only when their json file exists."""
    splits = {}
    for table, only_if_present in (
        (YTVIS_2019_SPLITS, False),
        (YTVIS_2021_SPLITS, False),
        (OVIS_SPLITS, False),
        (HELD_OUT_SPLITS, True),
    ):
        for name, (image_root, json_file) in table.items():
            json_path = os.path.join(root, json_file)
            if not only_if_present or os.path.isfile(json_path):
                splits[name] = (os.path.join(root, image_root), json_path)
    return splits


def register_all_builtin(root: str) -> List[str]:
    """Register every split of ``builtin_splits(root)``; returns the registered names."""
    splits = builtin_splits(root)
    for name, (image_root, json_file) in splits.items():
        register_ytvis_instances(name, instances_meta(_categories_of(name)), json_file, image_root)
    return list(splits)
