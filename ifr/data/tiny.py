"""A tiny synthetic video instance segmentation dataset in YouTube-VIS format.

Generated deterministically (numpy RNG, fixed seeds; no download) and cached on disk, so
that the whole pipeline (training, inference, evaluation) runs on CPU in minutes. Each video
shows textured objects of 3 categories on a noisy background; in every video two objects of
the same category cross paths at different depths (one occludes the other), and a third
enters or leaves the frame: the cases where identity switches happen. More objects move
freely. Masks are the visible parts (depth order applied); an instance whose visible part is
smaller than ``MIN_VISIBLE_PIXELS`` in a frame is absent there (``null``).

The class of an object is its shape and texture kind. In ``ytvis_tiny_{train,val}`` each
object also has its own look (tint, size, texture phase, slight shape variation), so that
identity is learnable from appearance; ``ytvis_tiny_hard_{train,val,tune}`` give every
object of a class the same look (only motion separates them). The ``tune`` splits are for
choosing test-time settings (e.g. a score threshold) on data that is neither trained nor
evaluated on. Scenes and rendering:
``ifr/data/tiny_scene.py``.

    python -m ifr.data.tiny          # generate the registered splits, print statistics

Cache layout (one folder per split, published by one atomic rename)::

    <tiny root>/train/instances.json
    <tiny root>/train/JPEGImages/<video name>/00000.jpg ...
    <tiny root>/val/...

The tiny root is ``$IFR_TINY_ROOT``, default ``<datasets root>/ytvis_tiny``.
"""

import json
import logging
import os
import shutil
import tempfile
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog

from ..utils.json_io import read_json
from ..utils.rle import mask_to_rle, rle_to_mask
from .datasets.builtin import datasets_root
from .datasets.categories import instances_meta
from .datasets.ytvis import load_ytvis_json
from .tiny_scene import APPEARANCES, HEIGHT, WIDTH, make_scene, render_frame

__all__ = [
    "TINY_CATEGORIES",
    "TINY_SPLITS",
    "generate_tiny_ytvis",
    "tiny_statistics",
    "register_tiny_ytvis",
    "tiny_root",
]

logger = logging.getLogger(__name__)

# Bump when the generator's output changes: a cache of another version is regenerated.
GENERATOR_VERSION = 5
MIN_VISIBLE_PIXELS = 12
_JPEG_QUALITY = 95

TINY_CATEGORIES: List[Dict] = [
    {"id": 1, "name": "striped_disc", "color": [230, 57, 70], "isthing": 1},
    {"id": 2, "name": "checkered_square", "color": [29, 110, 230], "isthing": 1},
    {"id": 3, "name": "dotted_triangle", "color": [46, 184, 76], "isthing": 1},
]
# split -> generation parameters of the registered ``ytvis_tiny_<split>``. The hard splits
# have the same trajectories (same seeds) with one look per class: the stress test.
TINY_SPLITS: Dict[str, Dict] = {
    # 256 training videos: with 32 the tiny IFR overfits them (train AP 92.5, val AP 32.6);
    # with 256 its val AP is 48.4 (docs/experiments.md, runs 2 and 4). The first 32 are the
    # same videos either way (one seed per video index).
    "train": {"num_videos": 256, "num_frames": 8, "seed": 1, "appearance": "distinct"},
    # 64 val videos (228 tracks): with 8, the seed-to-seed spread of AP was as wide as
    # the differences between systems (docs/experiments.md). The first 8 are the same videos.
    "val": {"num_videos": 64, "num_frames": 10, "seed": 2, "appearance": "distinct"},
    # The hard splits: the same trajectories as train/val (same seeds), one look per class.
    "hard_train": {"num_videos": 256, "num_frames": 8, "seed": 1, "appearance": "identical"},
    "hard_val": {"num_videos": 64, "num_frames": 10, "seed": 2, "appearance": "identical"},
    # Tune splits: neither trained nor evaluated on, for choosing test-time settings such as
    # each model's tracking score threshold (ifr/evaluation/operating_point.py).
    "tune": {"num_videos": 32, "num_frames": 10, "seed": 3, "appearance": "distinct"},
    "hard_tune": {"num_videos": 32, "num_frames": 10, "seed": 3, "appearance": "identical"},
}


def tiny_root() -> str:
    """Cache folder of the tiny dataset: ``$IFR_TINY_ROOT``, default
    ``<datasets root>/ytvis_tiny``."""
    return os.environ.get("IFR_TINY_ROOT") or os.path.join(datasets_root(), "ytvis_tiny")


# ---------------------------------------------------------------- generation


def _encode(mask: np.ndarray) -> Tuple[Optional[Dict], Optional[List[float]], Optional[int]]:
    """(RLE, bbox XYWH, area) of a visible mask, or ``None``s where the object is absent."""
    area = int(mask.sum())
    if area < MIN_VISIBLE_PIXELS:
        return None, None, None
    rle = mask_to_rle(mask)
    bbox = [float(v) for v in mask_util.toBbox(rle)]
    return rle, bbox, area


def _write_video(rng, video_id, name, num_frames, appearance, image_dir) -> Tuple[Dict, List[Dict]]:
    """Render one video into ``image_dir/name/``; returns its json video entry and one
    annotation (track) per object, before track ids are assigned."""
    objects = make_scene(rng, num_frames, appearance)
    # Near-grey background (small tint), so that the saturated textures stand out.
    background_level = rng.uniform(70, 150) + rng.uniform(-12, 12, size=3)
    os.makedirs(os.path.join(image_dir, name))
    file_names = []
    tracks = [{"segmentations": [], "bboxes": [], "areas": []} for _ in objects]
    for t in range(num_frames):
        image, visible = render_frame(rng, objects, t, background_level)
        file_name = f"{name}/{t:05d}.jpg"
        path = os.path.join(image_dir, file_name)
        cv2.imwrite(path, image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        file_names.append(file_name)
        for track, mask in zip(tracks, visible):
            for key, value in zip(("segmentations", "bboxes", "areas"), _encode(mask)):
                track[key].append(value)
    video = {
        "id": video_id,
        "width": WIDTH,
        "height": HEIGHT,
        "length": num_frames,
        "file_names": file_names,
    }
    annotations = [
        dict(
            track,
            video_id=video_id,
            category_id=obj["category_id"],
            iscrowd=0,
            width=WIDTH,
            height=HEIGHT,
            length=1,
        )
        for obj, track in zip(objects, tracks)
        if any(s is not None for s in track["segmentations"])
    ]
    return video, annotations


def _write_split(folder: str, split: str, params: Dict) -> None:
    image_dir = os.path.join(folder, "JPEGImages")
    videos, annotations = [], []
    for index in range(params["num_videos"]):
        rng = np.random.default_rng([params["seed"], index])
        video, tracks = _write_video(
            rng,
            index + 1,
            f"{split}_{index:03d}",
            params["num_frames"],
            params["appearance"],
            image_dir,
        )
        videos.append(video)
        annotations.extend(tracks)
    for track_id, ann in enumerate(annotations, start=1):
        ann["id"] = track_id
    data = {
        "info": {"description": "ifr tiny synthetic VIS dataset", **params},
        "licenses": [],
        "categories": [
            {"id": c["id"], "name": c["name"], "supercategory": "shape"} for c in TINY_CATEGORIES
        ],
        "videos": videos,
        "annotations": annotations,
    }
    with open(os.path.join(folder, "instances.json"), "w") as f:
        json.dump(data, f)


def generate_tiny_ytvis(
    root: str,
    split: str,
    num_videos: int,
    num_frames: int,
    seed: int,
    appearance: str = "distinct",
) -> Tuple[str, str]:
    """Make sure ``root/split`` holds the tiny dataset of these parameters, generating it
    when absent. Returns ``(image_root, json_file)``. ``appearance``: ``"distinct"`` (each
    object has its own look) or ``"identical"`` (one look per class), see
    ``ifr/data/tiny_scene.py``.

    Generation writes into a temporary folder inside ``root`` and publishes it with one
    ``os.rename``; when several processes start at once, one rename wins and the others
    discard their copy. The result depends only on the arguments (byte-identical files).

    A cache written by another generator version is replaced; one written with other
    parameters of this version is refused.

    Raises:
        RuntimeError: ``root/split`` exists but was generated with other parameters, or is
            incomplete.
    """
    params = {
        "generator_version": GENERATOR_VERSION,
        "split": split,
        "num_videos": int(num_videos),
        "num_frames": int(num_frames),
        "seed": int(seed),
        "appearance": appearance,
    }
    if appearance not in APPEARANCES:
        raise ValueError(f"appearance must be one of {APPEARANCES}, got {appearance!r}")
    target = os.path.join(root, split)
    json_file = os.path.join(target, "instances.json")
    if os.path.isfile(json_file) and _cached_params(json_file).get("generator_version") != (
        GENERATOR_VERSION
    ):
        _discard_stale(root, target)
    if not os.path.exists(target):
        _generate_atomically(root, target, split, params)
    _check_cached_params(target, json_file, params)
    return os.path.join(target, "JPEGImages"), json_file


def _generate_atomically(root: str, target: str, split: str, params: Dict) -> None:
    os.makedirs(root, exist_ok=True)
    logger.info(f"Generating the tiny dataset '{split}' ({params['num_videos']} videos) in {root}")
    tmp = tempfile.mkdtemp(prefix=f".{split}.tmp-", dir=root)
    try:
        _write_split(tmp, split, params)
        os.rename(tmp, target)
    except OSError:
        if not os.path.isdir(target):
            raise
        logger.info(f"Another process generated {target} first; using it")
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def _cached_params(json_file: str) -> Dict:
    return read_json(json_file, "tiny dataset cache").get("info", {})


def _discard_stale(root: str, target: str) -> None:
    """Move a cache of another generator version out of the way (one atomic rename; a
    concurrent process that loses the race finds it gone), then delete it."""
    logger.info(f"{target} was made by another version of the generator; regenerating it")
    trash = tempfile.mkdtemp(prefix=".stale-", dir=root)
    try:
        os.rename(target, os.path.join(trash, "old"))
    except OSError:
        pass  # another process moved it first
    shutil.rmtree(trash, ignore_errors=True)


def _check_cached_params(target: str, json_file: str, params: Dict) -> None:
    if not os.path.isfile(json_file):
        raise RuntimeError(f"{target} exists but has no instances.json; delete the folder")
    cached = {k: v for k, v in _cached_params(json_file).items() if k in params}
    if cached != params:
        raise RuntimeError(
            f"{json_file} was generated with {cached}, not {params}; delete {target} "
            "to regenerate it"
        )


def register_tiny_ytvis(root: Optional[str] = None) -> List[str]:
    """Register ``ytvis_tiny_<split>`` for every split of ``TINY_SPLITS``, cached under
    ``root`` (default ``tiny_root()``). Generation happens on the first
    ``DatasetCatalog.get``. Re-registering replaces earlier registrations."""
    root = root or tiny_root()
    names = []
    for split, params in TINY_SPLITS.items():
        name = f"ytvis_tiny_{split}"
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)

        def load(split=split, params=params, name=name):
            image_root, json_file = generate_tiny_ytvis(root, split, **params)
            return load_ytvis_json(json_file, image_root, name)

        DatasetCatalog.register(name, load)
        MetadataCatalog.get(name).set(
            json_file=os.path.join(root, split, "instances.json"),
            image_root=os.path.join(root, split, "JPEGImages"),
            evaluator_type="ytvis",
            generated_on_demand=True,  # files appear on first use: no pre-flight file check
            **instances_meta(TINY_CATEGORIES),
        )
        names.append(name)
    return names


# ---------------------------------------------------------------- statistics


def tiny_statistics(json_file: str, image_root: str) -> Dict[str, float]:
    """Statistics of a tiny split (any YouTube-VIS file with RLE masks works):

    - ``instances_per_video_{min,median,max}``;
    - ``same_class_instance_share``: instances with another instance of their class in
      their video; ``same_class_pair_share``: same-class pairs among instance pairs of a
      video;
    - ``object_size_{min,median}``: per instance, the longest side (px) of its largest
      visible box over the video;
    - ``same_class_colour_distance_{min,median}``: per same-class pair of a video, the
      RGB distance between the instances' mean colours over their visible pixels (read
      from the frames).
    """
    data = read_json(json_file, "tiny dataset annotations")
    tracks: Dict[int, List[Dict]] = {}
    for ann in data["annotations"]:
        tracks.setdefault(ann["video_id"], []).append(ann)
    videos = {v["id"]: v for v in data["videos"]}
    counts, sizes, distances = [], [], []
    same_instances = pairs = same_pairs = 0
    for video_id, anns in tracks.items():
        categories = [a["category_id"] for a in anns]
        counts.append(len(anns))
        same_instances += sum(categories.count(c) > 1 for c in categories)
        n = len(anns)
        pairs += n * (n - 1) // 2
        sizes += [_largest_extent(a) for a in anns]
        colours = _mean_colours(videos[video_id], anns, image_root)
        for i in range(n):
            for j in range(i + 1, n):
                if categories[i] == categories[j]:
                    same_pairs += 1
                    distances.append(float(np.linalg.norm(colours[i] - colours[j])))
    return {
        "videos": len(videos),
        "instances_per_video_min": int(np.min(counts)),
        "instances_per_video_median": float(np.median(counts)),
        "instances_per_video_max": int(np.max(counts)),
        "same_class_instance_share": same_instances / sum(counts),
        "same_class_pair_share": same_pairs / max(pairs, 1),
        "object_size_min": float(np.min(sizes)),
        "object_size_median": float(np.median(sizes)),
        "same_class_colour_distance_min": float(np.min(distances)) if distances else 0.0,
        "same_class_colour_distance_median": float(np.median(distances)) if distances else 0.0,
    }


def _largest_extent(ann: Dict) -> float:
    boxes = [mask_util.toBbox(s) for s in ann["segmentations"] if s is not None]
    return float(max(max(b[2], b[3]) for b in boxes))


def _mean_colours(video: Dict, anns: List[Dict], image_root: str) -> List[np.ndarray]:
    """Mean RGB (3,) of each annotation's visible pixels over the video."""
    sums = [np.zeros(3) for _ in anns]
    pixels = [0 for _ in anns]
    for t, name in enumerate(video["file_names"]):
        image = cv2.imread(os.path.join(image_root, name))[:, :, ::-1].astype(np.float64)
        for k, ann in enumerate(anns):
            segm = ann["segmentations"][t]
            if segm is not None:
                mask = rle_to_mask(segm)
                sums[k] += image[mask].sum(axis=0)
                pixels[k] += int(mask.sum())
    return [s / max(p, 1) for s, p in zip(sums, pixels)]


def main() -> None:
    """Generate the registered tiny splits under ``tiny_root()`` and print statistics."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for split, params in TINY_SPLITS.items():
        image_root, json_file = generate_tiny_ytvis(tiny_root(), split, **params)
        stats = tiny_statistics(json_file, image_root)
        print(
            f"ytvis_tiny_{split}: "
            + ", ".join(
                f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in stats.items()
            )
        )


if __name__ == "__main__":
    main()
