"""Helpers shared by the data tests: write hand-made YouTube-VIS files."""

import json
import os

import numpy as np
from PIL import Image


def write_frames(image_root, video_name, images):
    """Write (H, W, 3) uint8 RGB arrays as lossless PNG frames; returns relative names."""
    os.makedirs(os.path.join(image_root, video_name), exist_ok=True)
    names = []
    for t, image in enumerate(images):
        name = f"{video_name}/{t:05d}.png"
        Image.fromarray(image).save(os.path.join(image_root, name))
        names.append(name)
    return names


def write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f)
    return str(path)


def blank_frames(num, height=8, width=10):
    return [np.zeros((height, width, 3), np.uint8) for _ in range(num)]
