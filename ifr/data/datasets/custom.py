"""Datasets of one's own, named on the command line or in a config: ``DATASETS.REGISTER``
entries ``NAME=ANNOTATIONS.json:FRAMES_FOLDER`` register YouTube-VIS-format datasets (their
classes read from the json) before a run reads ``DATASETS.TRAIN``/``TEST``."""

import os
from typing import List, Sequence, Tuple

from detectron2.data import DatasetCatalog, MetadataCatalog

from ...utils.errors import UserInputError
from .ytvis import register_ytvis_instances

__all__ = ["CustomDatasetError", "parse_dataset_spec", "register_custom_datasets"]

JSON_SEPARATOR = ".json:"


class CustomDatasetError(UserInputError):
    """A ``DATASETS.REGISTER`` entry that cannot be registered."""


def parse_dataset_spec(spec: str) -> Tuple[str, str, str]:
    """``"mine=ann/train.json:frames/"`` -> ``("mine", "ann/train.json", "frames/")``."""
    name, _, files = spec.partition("=")
    json_stem, separator, image_root = files.partition(JSON_SEPARATOR)
    if not (name.strip() and separator and json_stem and image_root):
        raise CustomDatasetError(
            f"DATASETS.REGISTER {spec!r}: expected NAME=ANNOTATIONS.json:FRAMES_FOLDER"
        )
    return name.strip(), json_stem + ".json", image_root


def register_custom_datasets(specs: Sequence[str]) -> List[str]:
    """Register every entry (see the module docstring); returns their names. An entry
    already registered with the same files is left as it is.

    Raises:
        CustomDatasetError: a malformed entry, a missing file or folder, or a name already
            registered with other files.
        YTVISFormatError: the json is malformed (naming the file and what is wrong).
    """
    names = []
    for spec in specs:
        name, json_file, image_root = parse_dataset_spec(spec)
        for path, what, exists in (
            (json_file, "annotations", os.path.isfile),
            (image_root, "frames folder", os.path.isdir),
        ):
            if not exists(path):
                raise CustomDatasetError(f"DATASETS.REGISTER {name}: {what} {path!r} not found")
        if name in DatasetCatalog.list():
            meta = MetadataCatalog.get(name)
            same = (meta.get("json_file", None), meta.get("image_root", None)) == (
                json_file,
                image_root,
            )
            if not same:
                raise CustomDatasetError(
                    f"DATASETS.REGISTER {name}: the name is already registered, with "
                    f"{meta.get('json_file', '?')}; choose another name"
                )
        else:
            register_ytvis_instances(name, {}, json_file, image_root)
        names.append(name)
    return names
