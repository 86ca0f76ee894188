"""A tiny synthetic video instance segmentation dataset in YouTube-VIS format.

Generated deterministically (numpy RNG, fixed seeds; no download) and cached on disk, so
that the whole pipeline (training, inference, evaluation) runs on CPU in minutes. Each video
shows textured objects of 3 categories on a noisy background; in every video two objects of
the same category cross paths at different depths (one occludes the other), and a third
enters or leaves the frame: the cases where identity switches happen. More objects move
freely. Masks are the visible parts (depth order applied); an instance whose visible part is
smaller than ``MIN_VISIBLE_PIXELS`` in a frame is absent there (``null``).

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

from .datasets.builtin import datasets_root
from .datasets.categories import instances_meta
from .datasets.ytvis import load_ytvis_json

__all__ = [
    "TINY_CATEGORIES",
    "TINY_SPLITS",
    "generate_tiny_ytvis",
    "register_tiny_ytvis",
    "tiny_root",
]

logger = logging.getLogger(__name__)

# Bump when the generator's output changes: a cache of another version is regenerated.
GENERATOR_VERSION = 2
HEIGHT, WIDTH = 96, 128
MIN_VISIBLE_PIXELS = 12
_JPEG_QUALITY = 95

TINY_CATEGORIES: List[Dict] = [
    {"id": 1, "name": "striped_disc", "color": [230, 57, 70], "isthing": 1},
    {"id": 2, "name": "checkered_square", "color": [29, 110, 230], "isthing": 1},
    {"id": 3, "name": "dotted_triangle", "color": [46, 184, 76], "isthing": 1},
]
# split -> generation parameters of the registered ``ytvis_tiny_<split>``.
TINY_SPLITS: Dict[str, Dict[str, int]] = {
    "train": {"num_videos": 32, "num_frames": 8, "seed": 1},
    "val": {"num_videos": 8, "num_frames": 10, "seed": 2},
}

# Texture colours (RGB) per category: (first, second).
_TEXTURE_COLORS = {
    1: ((220, 40, 40), (250, 240, 230)),  # red / white diagonal stripes
    2: ((30, 60, 210), (245, 215, 40)),  # blue / yellow checkerboard
    3: ((60, 225, 80), (10, 20, 10)),  # bright green with dark dots
}


def tiny_root() -> str:
    """Cache folder of the tiny dataset: ``$IFR_TINY_ROOT``, default
    ``<datasets root>/ytvis_tiny``."""
    return os.environ.get("IFR_TINY_ROOT") or os.path.join(datasets_root(), "ytvis_tiny")


# ---------------------------------------------------------------- scene description


def _moving_object(category_id, size, start, end, depth, num_frames) -> Dict:
    """An object moving on a straight line from ``start`` to ``end`` (centre, (x, y))."""
    steps = np.linspace(0.0, 1.0, num_frames)[:, None]
    centres = (1 - steps) * np.asarray(start, float) + steps * np.asarray(end, float)
    return {"category_id": category_id, "size": size, "centres": centres, "depth": depth}


def _crossing_pair(rng) -> List[Tuple]:
    """Two objects of one category moving towards each other on nearly the same row."""
    category_id = int(rng.integers(1, 4))
    y = rng.uniform(30, HEIGHT - 30)
    dy = rng.uniform(-6, 6)
    left, right = rng.uniform(18, 34), rng.uniform(WIDTH - 34, WIDTH - 18)
    return [
        (category_id, rng.uniform(11, 16), (left, y), (right, y + dy)),
        (category_id, rng.uniform(11, 16), (right, y + dy), (left, y)),
    ]


def _edge_crossing(rng) -> Tuple:
    """An object entering the frame from a side, or leaving it through a side."""
    size = rng.uniform(10, 15)
    outside_x = -size - 2 if rng.random() < 0.5 else WIDTH + size + 2
    inside = (rng.uniform(35, WIDTH - 35), rng.uniform(22, HEIGHT - 22))
    outside = (outside_x, inside[1] + rng.uniform(-10, 10))
    entering = rng.random() < 0.5
    start, end = (outside, inside) if entering else (inside, outside)
    return (int(rng.integers(1, 4)), size, start, end)


def _free_mover(rng) -> Tuple:
    size = rng.uniform(9, 15)
    start = (rng.uniform(15, WIDTH - 15), rng.uniform(15, HEIGHT - 15))
    end = (
        np.clip(start[0] + rng.uniform(-40, 40), 10, WIDTH - 10),
        np.clip(start[1] + rng.uniform(-25, 25), 10, HEIGHT - 10),
    )
    return (int(rng.integers(1, 4)), size, start, end)


def _scene(rng, num_frames) -> List[Dict]:
    specs = _crossing_pair(rng) + [_edge_crossing(rng)]
    specs += [_free_mover(rng) for _ in range(int(rng.integers(0, 2)))]
    depths = rng.permutation(len(specs))  # larger depth = farther away
    return [
        _moving_object(c, s, a, b, int(d), num_frames)
        for (c, s, a, b), d in zip(specs, depths)
    ]


# ---------------------------------------------------------------- rendering


def _shape_mask(category_id, centre, size, xx, yy) -> np.ndarray:
    """Full (unoccluded) mask of an object, (H, W) bool."""
    u, v = xx - centre[0], yy - centre[1]
    if category_id == 1:  # disc
        return u * u + v * v <= size * size
    if category_id == 2:  # square
        half = 0.85 * size
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    # triangle pointing up: apex at v = -size, base at v = 0.8 size
    height = 1.8 * size
    return (v <= 0.8 * size) & (np.abs(u) <= (v + size) / height * size)


def _texture(category_id, centre, xx, yy) -> np.ndarray:
    """Texture of a category in the object's own coordinates (moves with it), (H, W, 3)."""
    u, v = xx - centre[0], yy - centre[1]
    first, second = (np.asarray(c, np.float32) for c in _TEXTURE_COLORS[category_id])
    if category_id == 1:
        pattern = (np.floor((u + v) / 4.0) % 2) == 0
    elif category_id == 2:
        pattern = ((np.floor(u / 5.0) + np.floor(v / 5.0)) % 2) == 0
    else:
        du, dv = (u % 7.0) - 3.5, (v % 7.0) - 3.5
        pattern = du * du + dv * dv > 5.0
    return np.where(pattern[..., None], first, second)


def _render_frame(rng, objects, t, background_level) -> Tuple[np.ndarray, List[np.ndarray]]:
    """Render frame t back to front. Returns the RGB image (H, W, 3) uint8 and the visible
    mask (H, W) bool of every object."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    image = background_level + rng.normal(0.0, 18.0, (HEIGHT, WIDTH, 3))
    full = [_shape_mask(o["category_id"], o["centres"][t], o["size"], xx, yy) for o in objects]
    for k in sorted(range(len(objects)), key=lambda k: -objects[k]["depth"]):
        texture = _texture(objects[k]["category_id"], objects[k]["centres"][t], xx, yy)
        image[full[k]] = texture[full[k]]
    visible = []
    for k, obj in enumerate(objects):
        nearer = [full[j] for j, o in enumerate(objects) if o["depth"] < obj["depth"]]
        occluder = np.logical_or.reduce(nearer) if nearer else np.zeros_like(full[k])
        visible.append(full[k] & ~occluder)
    return np.clip(image, 0, 255).astype(np.uint8), visible


def _encode(mask: np.ndarray) -> Tuple[Optional[Dict], Optional[List[float]], Optional[int]]:
    """(RLE, bbox XYWH, area) of a visible mask, or ``None``s where the object is absent."""
    area = int(mask.sum())
    if area < MIN_VISIBLE_PIXELS:
        return None, None, None
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    bbox = [float(v) for v in mask_util.toBbox(rle)]
    rle["counts"] = rle["counts"].decode("ascii")
    return rle, bbox, area


# ---------------------------------------------------------------- generation


def _write_video(rng, video_id, name, num_frames, image_dir) -> Tuple[Dict, List[Dict]]:
    """Render one video into ``image_dir/name/``; returns its json video entry and one
    annotation (track) per object, before track ids are assigned."""
    objects = _scene(rng, num_frames)
    # Near-grey background (small tint), so that the saturated textures stand out.
    background_level = rng.uniform(70, 150) + rng.uniform(-12, 12, size=3)
    os.makedirs(os.path.join(image_dir, name))
    file_names = []
    tracks = [{"segmentations": [], "bboxes": [], "areas": []} for _ in objects]
    for t in range(num_frames):
        image, visible = _render_frame(rng, objects, t, background_level)
        file_name = f"{name}/{t:05d}.jpg"
        path = os.path.join(image_dir, file_name)
        cv2.imwrite(path, image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        file_names.append(file_name)
        for track, mask in zip(tracks, visible):
            for key, value in zip(("segmentations", "bboxes", "areas"), _encode(mask)):
                track[key].append(value)
    video = {
        "id": video_id, "width": WIDTH, "height": HEIGHT,
        "length": num_frames, "file_names": file_names,
    }
    annotations = [
        dict(track, video_id=video_id, category_id=obj["category_id"], iscrowd=0,
             width=WIDTH, height=HEIGHT, length=1)
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
            rng, index + 1, f"{split}_{index:03d}", params["num_frames"], image_dir
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
    root: str, split: str, num_videos: int, num_frames: int, seed: int
) -> Tuple[str, str]:
    """Make sure ``root/split`` holds the tiny dataset of these parameters, generating it
    when absent. Returns ``(image_root, json_file)``.

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
    }
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
    with open(json_file) as f:
        return json.load(f).get("info", {})


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
