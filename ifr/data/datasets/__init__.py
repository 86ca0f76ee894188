"""Dataset tables, the YouTube-VIS-format loader and the built-in registrations."""
from .builtin import HELD_OUT_SPLITS, OVIS_SPLITS, YTVIS_2019_SPLITS, YTVIS_2021_SPLITS
from .builtin import builtin_splits, datasets_root, register_all_builtin
from .categories import (
    OVIS_CATEGORIES,
    YTVIS_2019_CATEGORIES,
    YTVIS_2021_CATEGORIES,
    instances_meta,
)
from .custom import CustomDatasetError, register_custom_datasets
from .ytvis import YTVISFormatError, load_ytvis_json, register_ytvis_instances
