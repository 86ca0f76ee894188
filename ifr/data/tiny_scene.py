"""Scenes of the tiny synthetic dataset: what moves where, how each object looks, and the
rendering of one frame (used by ``ifr/data/tiny.py``, which writes the files).

The class of an object is its shape and its kind of texture: striped disc, checkered
square, dotted triangle. Two appearances:

- ``"distinct"`` (``ytvis_tiny_{train,val}``): each object also has its own look, so that
  identity can be learnt from appearance as well as from motion: a tint of its class's
  texture colours (hue and brightness), its size, the period, angle and phase of its
  texture, and a slight shape variation (aspect ratio, triangle skew). Objects of one class
  in one video get different tint slots (other hue side or other brightness).
- ``"identical"`` (``ytvis_tiny_hard_{train,val}``): every object of a class has the same
  texture and colours, smaller sizes; only motion separates objects of one class. This is
  the generator of version 2, kept as a stress test.

Coordinates: x to the right, y down, in pixels; ``(u, v)`` are an object's own coordinates
(relative to its centre), so textures move with the object.
"""

import colorsys
from dataclasses import dataclass, replace
from typing import Dict, List, Sequence, Tuple

import numpy as np

__all__ = ["APPEARANCES", "HEIGHT", "WIDTH", "Look", "make_scene", "render_frame"]

HEIGHT, WIDTH = 96, 128
APPEARANCES = ("distinct", "identical")

RGB = Tuple[float, float, float]


@dataclass(frozen=True)
class Look:
    """How one object is drawn.

    Attributes:
        primary, secondary: the texture's two RGB colours (0-255).
        period: texture period in pixels (stripe width x 2, checker cell, dot spacing).
        stripe_dir: coefficients (a, b) of the stripes' coordinate ``a u + b v``.
        phase: texture phase (u, v), in periods.
        dot_radius2: squared radius of the dots (px^2).
        aspect: shape stretch: the shape is drawn in ``(u / aspect, v * aspect)``.
        skew: triangle base shift, as a fraction of the object's size per unit height.
    """

    primary: RGB
    secondary: RGB
    period: float
    stripe_dir: Tuple[float, float] = (1.0, 1.0)
    phase: Tuple[float, float] = (0.0, 0.0)
    dot_radius2: float = 5.0
    aspect: float = 1.0
    skew: float = 0.0


# The class looks: the "identical" appearance, and the base that "distinct" tints.
CLASS_LOOKS: Dict[int, Look] = {
    1: Look((220, 40, 40), (250, 240, 230), period=4.0),  # red / white diagonal stripes
    2: Look((30, 60, 210), (245, 215, 40), period=5.0),  # blue / yellow checkerboard
    3: Look((60, 225, 80), (10, 20, 10), period=7.0),  # bright green with dark dots
}

# Object half-size ranges (px) per appearance: (crossing pair, edge crosser, free mover).
# "distinct": at least ~24 px across, so that a stride-4 mask has ~6 cells per object.
_SIZE_RANGES = {
    "identical": ((11, 16), (10, 15), (9, 15)),
    "distinct": ((14, 18), (14, 18), (14, 18)),
}
# Tint slots (hue side, bright or dark) given to the objects of one class in a video.
_TINT_SLOTS = ((-1, True), (1, False), (1, True), (-1, False))


# ---------------------------------------------------------------- motion


def _moving_object(category_id, size, start, end, depth, num_frames) -> Dict:
    """An object moving on a straight line from ``start`` to ``end`` (centre, (x, y))."""
    steps = np.linspace(0.0, 1.0, num_frames)[:, None]
    centres = (1 - steps) * np.asarray(start, float) + steps * np.asarray(end, float)
    return {"category_id": category_id, "size": size, "centres": centres, "depth": depth}


def _crossing_pair(rng, sizes) -> List[Tuple]:
    """Two objects of one category moving towards each other on nearly the same row."""
    category_id = int(rng.integers(1, 4))
    y = rng.uniform(30, HEIGHT - 30)
    dy = rng.uniform(-6, 6)
    left, right = rng.uniform(18, 34), rng.uniform(WIDTH - 34, WIDTH - 18)
    return [
        (category_id, rng.uniform(*sizes), (left, y), (right, y + dy)),
        (category_id, rng.uniform(*sizes), (right, y + dy), (left, y)),
    ]


def _edge_crossing(rng, sizes) -> Tuple:
    """An object entering the frame from a side, or leaving it through a side."""
    size = rng.uniform(*sizes)
    outside_x = -size - 2 if rng.random() < 0.5 else WIDTH + size + 2
    inside = (rng.uniform(35, WIDTH - 35), rng.uniform(22, HEIGHT - 22))
    outside = (outside_x, inside[1] + rng.uniform(-10, 10))
    entering = rng.random() < 0.5
    start, end = (outside, inside) if entering else (inside, outside)
    return (int(rng.integers(1, 4)), size, start, end)


def _free_mover(rng, sizes) -> Tuple:
    size = rng.uniform(*sizes)
    start = (rng.uniform(15, WIDTH - 15), rng.uniform(15, HEIGHT - 15))
    end = (
        np.clip(start[0] + rng.uniform(-40, 40), 10, WIDTH - 10),
        np.clip(start[1] + rng.uniform(-25, 25), 10, HEIGHT - 10),
    )
    return (int(rng.integers(1, 4)), size, start, end)


def make_scene(rng: np.random.Generator, num_frames: int, appearance: str) -> List[Dict]:
    """The objects of one video: a same-class pair crossing at different depths, an object
    entering or leaving, and sometimes a free mover. Each object is a dict with
    ``category_id``, ``size`` (half-size, px), ``centres`` (T, 2) (x, y), ``depth`` (larger
    is farther) and ``look`` (``Look``)."""
    if appearance not in APPEARANCES:
        raise ValueError(f"appearance must be one of {APPEARANCES}, got {appearance!r}")
    pair_sizes, edge_sizes, free_sizes = _SIZE_RANGES[appearance]
    specs = _crossing_pair(rng, pair_sizes) + [_edge_crossing(rng, edge_sizes)]
    specs += [_free_mover(rng, free_sizes) for _ in range(int(rng.integers(0, 2)))]
    depths = rng.permutation(len(specs))
    objects = [
        _moving_object(c, s, a, b, int(d), num_frames) for (c, s, a, b), d in zip(specs, depths)
    ]
    categories = [o["category_id"] for o in objects]
    if appearance == "identical":
        looks = [CLASS_LOOKS[c] for c in categories]
    else:
        looks = _instance_looks(rng, categories)
    for obj, look in zip(objects, looks):
        obj["look"] = look
    return objects


# ---------------------------------------------------------------- appearance


def _instance_looks(rng, categories: Sequence[int]) -> List[Look]:
    """One look per object: the j-th object of a class in the video takes the j-th tint slot
    of a per-class random order, so objects of one class differ in hue side or brightness."""
    slot_orders = {c: rng.permutation(len(_TINT_SLOTS)) for c in sorted(set(categories))}
    looks, seen = [], {c: 0 for c in slot_orders}
    for c in categories:
        slot = _TINT_SLOTS[slot_orders[c][seen[c] % len(_TINT_SLOTS)]]
        seen[c] += 1
        looks.append(_jittered_look(rng, c, *slot))
    return looks


def _jittered_look(rng, category_id: int, hue_side: int, bright: bool) -> Look:
    base = CLASS_LOOKS[category_id]
    hue_shift = hue_side * rng.uniform(0.04, 0.09)
    value_scale = rng.uniform(1.0, 1.12) if bright else rng.uniform(0.6, 0.72)
    primary = _tinted(base.primary, hue_shift, value_scale)
    if category_id == 3:  # dark dots: any dark colour
        secondary = tuple(float(x) for x in rng.uniform(0, 45, size=3))
    else:
        secondary = _tinted(base.secondary, rng.uniform(-0.03, 0.03), rng.uniform(0.85, 1.0))
    angle = np.deg2rad(rng.uniform(20, 70))
    period = {1: (3.5, 5.5), 2: (4.5, 6.5), 3: (6.0, 8.5)}[category_id]
    return replace(
        base,
        primary=primary,
        secondary=secondary,
        period=rng.uniform(*period),
        stripe_dir=(np.sqrt(2) * np.cos(angle), np.sqrt(2) * np.sin(angle)),
        phase=(rng.uniform(0, 1), rng.uniform(0, 1)),
        dot_radius2=rng.uniform(3.5, 7.0),
        aspect=rng.uniform(0.9, 1.1),
        skew=rng.uniform(-0.2, 0.2) if category_id == 3 else 0.0,
    )


def _tinted(rgb: RGB, hue_shift: float, value_scale: float) -> RGB:
    """``rgb`` with its hue turned by ``hue_shift`` (fraction of the circle) and its value
    scaled by ``value_scale`` (clipped to 1)."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255.0 for c in rgb))
    r, g, b = colorsys.hsv_to_rgb((h + hue_shift) % 1.0, s, min(1.0, v * value_scale))
    return (255.0 * r, 255.0 * g, 255.0 * b)


# ---------------------------------------------------------------- rendering


def _shape_mask(category_id, centre, size, look: Look, xx, yy) -> np.ndarray:
    """Full (unoccluded) mask of an object, (H, W) bool."""
    u = (xx - centre[0]) / look.aspect
    v = (yy - centre[1]) * look.aspect
    if category_id == 1:  # disc (an ellipse when aspect != 1)
        return u * u + v * v <= size * size
    if category_id == 2:  # square (a rectangle when aspect != 1)
        half = 0.85 * size
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    # triangle pointing up: apex at v = -size, base at v = 0.8 size; skew shears it
    height = 1.8 * size
    u = u - look.skew * (v + size)
    return (v <= 0.8 * size) & (np.abs(u) <= (v + size) / height * size)


def _texture(category_id, centre, look: Look, xx, yy) -> np.ndarray:
    """Texture of an object in its own coordinates (moves with it), (H, W, 3) float32."""
    u, v = xx - centre[0], yy - centre[1]
    first, second = (np.asarray(c, np.float32) for c in (look.primary, look.secondary))
    period, (pu, pv) = look.period, look.phase
    if category_id == 1:
        a, b = look.stripe_dir
        pattern = (np.floor((u * a + v * b) / period + pu) % 2) == 0
    elif category_id == 2:
        pattern = ((np.floor(u / period + pu) + np.floor(v / period + pv)) % 2) == 0
    else:
        du = ((u + pu * period) % period) - period / 2
        dv = ((v + pv * period) % period) - period / 2
        pattern = du * du + dv * dv > look.dot_radius2
    return np.where(pattern[..., None], first, second)


def render_frame(
    rng: np.random.Generator, objects: List[Dict], t: int, background_level: np.ndarray
) -> Tuple[np.ndarray, List[np.ndarray]]:
    """Render frame t back to front on a noisy background. Returns the RGB image (H, W, 3)
    uint8 and the visible mask (H, W) bool of every object (depth order applied)."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    image = background_level + rng.normal(0.0, 18.0, (HEIGHT, WIDTH, 3))
    full = [
        _shape_mask(o["category_id"], o["centres"][t], o["size"], o["look"], xx, yy)
        for o in objects
    ]
    for k in sorted(range(len(objects)), key=lambda k: -objects[k]["depth"]):
        obj = objects[k]
        texture = _texture(obj["category_id"], obj["centres"][t], obj["look"], xx, yy)
        image[full[k]] = texture[full[k]]
    visible = []
    for k, obj in enumerate(objects):
        nearer = [full[j] for j, o in enumerate(objects) if o["depth"] < obj["depth"]]
        occluder = np.logical_or.reduce(nearer) if nearer else np.zeros_like(full[k])
        visible.append(full[k] & ~occluder)
    return np.clip(image, 0, 255).astype(np.uint8), visible
