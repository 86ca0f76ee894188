"""Data loaders over YouTube-VIS-format datasets: one clip per sample for training, one
whole video per batch for inference."""

import logging
import operator
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.utils.data as torchdata
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
from detectron2.data.build import trivial_batch_collator, worker_init_reset_seed
from detectron2.data.common import (
    AspectRatioGroupedDataset,
    DatasetFromList,
    MapDataset,
    ToIterableDataset,
)
from detectron2.utils import comm

from .dataset_mapper import YTVISDatasetMapper
from .datasets.frame_headers import check_frame_headers
from .samplers import ResumableTrainingSampler

__all__ = [
    "get_ytvis_dicts",
    "filter_videos_without_instances",
    "build_ytvis_train_loader",
    "build_ytvis_train_loader_and_sampler",
    "build_ytvis_test_loader",
]

logger = logging.getLogger(__name__)

# Seed of the training loader's own generator (the base seed of its workers' generators,
# which Detectron2's worker_init_reset_seed derives per worker).
LOADER_GENERATOR_SEED = 0


def get_ytvis_dicts(
    names: Union[str, Sequence[str]], check_headers: bool = False, for_training: bool = False
) -> List[Dict]:
    """The dataset dicts of the registered datasets ``names``, concatenated in order.

    With ``check_headers``, every frame's header is read and its size compared with the
    json (``ifr.data.datasets.frame_headers``), so that a bad frame fails here, not in a
    data-loader worker mid-training. With ``for_training``, a dataset without annotations
    (a test-split file) is refused, naming it.
    """
    if isinstance(names, str):
        names = [names]
    if len(names) == 0:
        raise ValueError("No dataset names given")
    dicts = []
    for name in names:
        if name not in DatasetCatalog.list():
            raise KeyError(f"Dataset '{name}' is not registered (see datasets/README.md)")
        videos = DatasetCatalog.get(name)
        if len(videos) == 0:
            raise ValueError(f"Dataset '{name}' is empty")
        if for_training and not any("annotations" in video for video in videos):
            json_file = MetadataCatalog.get(name).get("json_file", name)
            raise ValueError(
                f"Dataset '{name}' (DATASETS.TRAIN, {json_file}) has no annotations: a "
                "test-split file cannot train"
            )
        if check_headers:
            check_frame_headers(videos, MetadataCatalog.get(name).get("json_file", name))
        dicts.extend(videos)
    return dicts


def filter_videos_without_instances(dicts: List[Dict]) -> List[Dict]:
    """Drop videos with no annotated instance in any frame (nothing to train on); logs how
    many were dropped."""
    kept = [d for d in dicts if any(len(frame) > 0 for frame in d.get("annotations", []))]
    removed = len(dicts) - len(kept)
    if removed:
        logger.info(f"Removed {removed} of {len(dicts)} videos without instances")
    if not kept:
        raise ValueError("No video with instances left to train on")
    return kept


def build_ytvis_train_loader(cfg, mapper: Optional[YTVISDatasetMapper] = None):
    """Infinite loader of training clips over ``cfg.DATASETS.TRAIN`` (videos without
    instances removed), ``cfg.SOLVER.IMS_PER_BATCH`` clips per batch (total over workers).
    Yields lists of mapper outputs. The sampler is seeded by ``cfg.SEED`` when >= 0.
    Frame headers are checked unless ``cfg.DATALOADER.CHECK_FRAME_HEADERS`` is False."""
    return build_ytvis_train_loader_and_sampler(cfg, mapper)[0]


def build_ytvis_train_loader_and_sampler(
    cfg, mapper: Optional[YTVISDatasetMapper] = None
) -> Tuple[Any, ResumableTrainingSampler]:
    """:func:`build_ytvis_train_loader` and its sampler (to continue a resumed run's
    stream, :meth:`ResumableTrainingSampler.skip`)."""
    dicts = get_ytvis_dicts(
        cfg.DATASETS.TRAIN, cfg.DATALOADER.CHECK_FRAME_HEADERS, for_training=True
    )
    dicts = filter_videos_without_instances(dicts)
    if mapper is None:
        mapper = YTVISDatasetMapper(cfg, is_train=True)
    seed = cfg.SEED if cfg.SEED >= 0 else None
    sampler = ResumableTrainingSampler(len(dicts), seed=seed)
    loader = batch_loader(
        MapDataset(DatasetFromList(dicts, copy=False), mapper),
        sampler,
        cfg.SOLVER.IMS_PER_BATCH,
        aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
    return loader, sampler


def batch_loader(
    dataset: torchdata.Dataset,
    sampler: torchdata.Sampler,
    total_batch_size: int,
    *,
    aspect_ratio_grouping: bool,
    num_workers: int,
):
    """Detectron2's ``build_batch_data_loader`` (lists of ``total_batch_size / processes``
    samples; with ``aspect_ratio_grouping``, each of one aspect-ratio group), except that
    the loader draws its workers' base seed from a generator of its own, not from torch's
    global one: making an iterator of it (when a run starts, or resumes) leaves the
    training's random stream untouched."""
    world_size = comm.get_world_size()
    if total_batch_size <= 0 or total_batch_size % world_size:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH {total_batch_size} must be a positive multiple of the "
            f"number of processes ({world_size})"
        )
    batch_size = total_batch_size // world_size
    generator = torch.Generator().manual_seed(LOADER_GENERATOR_SEED)
    common = dict(
        num_workers=num_workers, worker_init_fn=worker_init_reset_seed, generator=generator
    )
    dataset = ToIterableDataset(dataset, sampler)
    if aspect_ratio_grouping:
        samples = torchdata.DataLoader(dataset, collate_fn=operator.itemgetter(0), **common)
        return AspectRatioGroupedDataset(samples, batch_size)
    return torchdata.DataLoader(
        dataset, batch_size=batch_size, drop_last=True, collate_fn=trivial_batch_collator, **common
    )


def build_ytvis_test_loader(cfg, dataset_name: str, mapper: Optional[YTVISDatasetMapper] = None):
    """Loader over every video of ``dataset_name`` once, in order, batch size 1
    (Detectron2's inference sampler). Frame headers are checked as for training."""
    if mapper is None:
        mapper = YTVISDatasetMapper(cfg, is_train=False)
    return build_detection_test_loader(
        get_ytvis_dicts(dataset_name, cfg.DATALOADER.CHECK_FRAME_HEADERS),
        mapper=mapper,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
