"""Data: YouTube-VIS-format datasets, the tiny synthetic set, clip mappers and loaders.

Importing this package registers every built-in dataset name with ``DatasetCatalog`` and
``MetadataCatalog`` (lazily: nothing is read until a dataset is used).
"""

from .build import (
    build_ytvis_test_loader,
    build_ytvis_train_loader,
    build_ytvis_train_loader_and_sampler,
    filter_videos_without_instances,
    get_ytvis_dicts,
)
from .dataset_mapper import YTVISDatasetMapper
from .datasets import (
    YTVISFormatError,
    datasets_root,
    load_ytvis_json,
    register_all_builtin,
    register_ytvis_instances,
)
from .split import split_ytvis_json
from .tiny import TINY_CATEGORIES, generate_tiny_ytvis, register_tiny_ytvis, tiny_root

__all__ = [
    "TINY_CATEGORIES",
    "YTVISDatasetMapper",
    "YTVISFormatError",
    "build_ytvis_test_loader",
    "build_ytvis_train_loader",
    "build_ytvis_train_loader_and_sampler",
    "datasets_root",
    "filter_videos_without_instances",
    "generate_tiny_ytvis",
    "get_ytvis_dicts",
    "load_ytvis_json",
    "register_ytvis_instances",
    "split_ytvis_json",
    "tiny_root",
]

register_all_builtin(datasets_root())
register_tiny_ytvis()
