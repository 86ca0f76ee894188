"""Map a video's dataset dict to model input: sample a clip, read and augment its frames,
build per-frame ``Instances`` (formats in docs/design.md)."""

import copy
import logging
from typing import Dict, List

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BitMasks, Instances

from ..utils.errors import UserInputError
from ..utils.rle import segmentation_to_mask
from .augmentation import PhotometricDistortion, vistr_crop_augmentations

__all__ = [
    "YTVISDatasetMapper",
    "build_clip_augmentations",
    "clip_instances",
    "sample_clip_frames",
]

logger = logging.getLogger(__name__)


def sample_clip_frames(
    length: int, num_frames: int, frame_range: int, shuffle: bool = False
) -> List[int]:
    """Frame indices of a training clip: a random reference frame plus ``num_frames - 1``
    distinct frames within ``frame_range`` frames of it. Where the window holds too few
    frames (short videos, a reference near an end with a small range), its frames are all
    used and the rest is drawn from it with repetition. Sorted unless ``shuffle``. Uses
    ``np.random`` (seeded per data-loader worker by Detectron2)."""
    ref = int(np.random.randint(length))
    window = list(range(max(0, ref - frame_range), min(length, ref + frame_range + 1)))
    others = [i for i in window if i != ref]
    needed = num_frames - 1
    if len(others) >= needed:
        picked = list(np.random.choice(others, needed, replace=False))
    else:
        picked = others + list(np.random.choice(window, needed - len(others), replace=True))
    frames = [ref] + [int(i) for i in picked]
    if shuffle:
        np.random.shuffle(frames)
    else:
        frames.sort()
    return frames


def build_clip_augmentations(cfg, is_train: bool) -> List[T.Augmentation]:
    """Resize (and, for training, optionally VisTR's photometric distortion and random size
    crop, then flip) applied identically to every frame of a clip: the mapper draws the
    random parameters once per clip (the photometric distortion's once per frame)."""
    if not is_train:
        return [T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")]
    augs: List[T.Augmentation] = []
    if cfg.INPUT.PHOTOMETRIC_DISTORTION:
        augs.append(PhotometricDistortion())
    crop = cfg.INPUT.RANDOM_SIZE_CROP
    if crop.ENABLED:
        augs += vistr_crop_augmentations(crop.PRE_RESIZE, crop.MIN_SIZE, crop.MAX_SIZE)
    augs.append(
        T.ResizeShortestEdge(
            cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING
        )
    )
    if cfg.INPUT.RANDOM_FLIP == "flip_by_clip":
        augs.append(T.RandomFlip(prob=0.5, horizontal=True, vertical=False))
    elif cfg.INPUT.RANDOM_FLIP != "none":
        raise ValueError(
            f"INPUT.RANDOM_FLIP must be 'flip_by_clip' or 'none', got {cfg.INPUT.RANDOM_FLIP!r}"
        )
    return augs


class YTVISDatasetMapper:
    """Dataset dict of one video -> model input of one clip (train) or the whole video
    (test). Output keys: ``image`` (list of T uint8 tensors (3, H, W)), ``instances``
    (train only: list of T ``Instances`` sharing the same M instances in the same order),
    ``height``, ``width``, ``length``, ``video_id``, ``frame_idx``, ``file_names``."""

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        augmentations: List[T.Augmentation],
        image_format: str,
        sampling_frame_num: int = 2,
        sampling_frame_range: int = 20,
        sampling_frame_shuffle: bool = False,
    ):
        if sampling_frame_num < 1:
            raise ValueError(f"sampling_frame_num must be >= 1, got {sampling_frame_num}")
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.sampling_frame_num = sampling_frame_num
        self.sampling_frame_range = sampling_frame_range
        self.sampling_frame_shuffle = sampling_frame_shuffle
        mode = "training" if is_train else "inference"
        logger.info(f"[YTVISDatasetMapper] Augmentations used in {mode}: {augmentations}")

    @classmethod
    def from_config(cls, cfg, is_train: bool = True) -> Dict:
        return {
            "is_train": is_train,
            "augmentations": build_clip_augmentations(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
            "sampling_frame_num": cfg.INPUT.SAMPLING_FRAME_NUM,
            "sampling_frame_range": cfg.INPUT.SAMPLING_FRAME_RANGE,
            "sampling_frame_shuffle": cfg.INPUT.SAMPLING_FRAME_SHUFFLE,
        }

    def __call__(self, dataset_dict: Dict) -> Dict:
        video = copy.deepcopy(dataset_dict)
        length = video["length"]
        if self.is_train:
            frame_idx = sample_clip_frames(
                length,
                self.sampling_frame_num,
                self.sampling_frame_range,
                self.sampling_frame_shuffle,
            )
        else:
            frame_idx = list(range(length))
        images, transforms = self._read_and_transform_frames(video, frame_idx)
        output = {
            "image": [_to_chw_tensor(image) for image in images],
            "height": video["height"],
            "width": video["width"],
            "length": length,
            "video_id": video["video_id"],
            "frame_idx": frame_idx,
            "file_names": [video["file_names"][i] for i in frame_idx],
        }
        if self.is_train:
            if "annotations" not in video:
                raise ValueError(f"video {video['video_id']} has no annotations to train on")
            frame_annotations = [video["annotations"][i] for i in frame_idx]
            output["instances"] = clip_instances(
                frame_annotations,
                transforms,
                (video["height"], video["width"]),
                images[0].shape[:2],
            )
        return output

    def _read_and_transform_frames(self, video: Dict, frame_idx: List[int]):
        """Read the frames; the augmentation's random parameters are drawn once, on the
        first frame, and the same transforms are applied to every frame."""
        images, transforms = [], None
        for i in frame_idx:
            image = read_frame(video, i, self.image_format)
            utils.check_image_size({**video, "file_name": video["file_names"][i]}, image)
            if transforms is None:
                aug_input = T.AugInput(image)
                transforms = self.augmentations(aug_input)
                image = aug_input.image
            else:
                image = transforms.apply_image(image)
            images.append(image)
        return images, transforms


class UnreadableFrameError(UserInputError):
    """A frame file that exists but cannot be decoded."""


def read_frame(video: Dict, index: int, image_format: str) -> np.ndarray:
    """Frame ``index`` of ``video`` as an (H, W, 3) uint8 array; a file that cannot be
    decoded (truncated, not an image) raises UnreadableFrameError naming it and the video,
    not a bare decoder error from inside a data-loader worker."""
    path = video["file_names"][index]
    try:
        return utils.read_image(path, format=image_format)
    except (OSError, SyntaxError, ValueError) as error:  # PIL's decoding errors
        raise UnreadableFrameError(
            f"video id {video.get('video_id')}, frame {index}: {path} cannot be decoded "
            f"({' '.join(str(error).split())})"
        ) from error


def _to_chw_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 array -> (3, H, W) uint8 tensor."""
    return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))


def clip_instances(
    frame_annotations: List[List[Dict]],
    transforms: T.TransformList,
    original_size: tuple,
    image_size: tuple,
) -> List[Instances]:
    """Per-frame ``Instances`` of a clip holding the same M instances in the same order:
    the tracks (sorted by track id) that are not crowds and whose mask, after augmentation,
    is non-empty in at least one of the T frames (as Mask2Former-VIS trains: a track with
    nothing to see in the clip is no target).

    Args:
        frame_annotations: T lists of instance dicts (``id``, ``category_id``,
            ``segmentation``, optional ``iscrowd``) of the sampled frames.
        transforms: the clip's augmentation, applied to the masks.
        original_size: (H0, W0) of the video.
        image_size: (H, W) after augmentation.

    Returns:
        T ``Instances`` of size (H, W): ``gt_ids (M,) int64`` (-1 where absent or empty
        after augmentation), ``gt_classes (M,) int64``, ``gt_masks`` BitMasks (M, H, W)
        (all-zero where absent), ``gt_boxes`` Boxes (M, 4) XYXY from the masks (zero where
        absent).
    """
    classes: Dict[int, int] = {}
    for annotations in frame_annotations:
        for obj in annotations:
            if not obj.get("iscrowd", 0):
                classes.setdefault(obj["id"], obj["category_id"])
    track_ids = sorted(classes)
    h, w = image_size
    num_frames = len(frame_annotations)
    masks = torch.zeros((num_frames, len(track_ids), h, w), dtype=torch.bool)
    ids = torch.full((num_frames, len(track_ids)), -1, dtype=torch.int64)
    for t, annotations in enumerate(frame_annotations):
        by_id = {obj["id"]: obj for obj in annotations}
        for m, track_id in enumerate(track_ids):
            if track_id in by_id:
                segmentation = by_id[track_id]["segmentation"]
                mask = segmentation_to_mask(segmentation, *original_size).astype(np.uint8)
                masks[t, m] = torch.from_numpy(transforms.apply_segmentation(mask).astype(bool))
                if masks[t, m].any():
                    ids[t, m] = track_id
    keep = (ids >= 0).any(dim=0)  # (M,): visible in some frame of the clip
    gt_classes = torch.tensor([classes[i] for i in track_ids], dtype=torch.int64)[keep]
    instances = []
    for t in range(num_frames):
        frame = Instances((h, w))
        frame.gt_ids = ids[t, keep]
        frame.gt_classes = gt_classes
        frame.gt_masks = BitMasks(masks[t, keep])
        frame.gt_boxes = frame.gt_masks.get_bounding_boxes()
        instances.append(frame)
    return instances
