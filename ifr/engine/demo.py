"""What ``tools/demo.py`` does, as functions tests can call: check the outputs, read the
video, predict, draw and write.

Everything that can be wrong with the outputs is checked before inference: an output
that is, or would overwrite, an input is refused; so are an output that is not ``.mp4``
(the writer makes MP4 data), a folder given as ``--output``, and ``--frames-dir`` inside
the folder of the input frames (the drawn frames would replace or join them).
"""

import logging
import os
from typing import Any, Dict, List, Optional, Sequence

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from tqdm import tqdm

from ..checkpoint import CLASS_COLORS_KEY, CLASS_NAMES_KEY
from ..inference.predictor import VideoPredictor
from ..inference.visualize import draw_video
from ..utils.errors import UserInputError
from ..utils.video_io import (
    DEFAULT_FPS,
    IMAGE_EXTENSIONS,
    read_video,
    video_input_files,
    write_image,
    write_video,
)

logger = logging.getLogger("ifr.demo")

VIDEO_EXTENSION = ".mp4"  # what write_video writes (codec mp4v)


class DemoOutputError(UserInputError):
    """An output of the demo that would overwrite an input or cannot be written."""


def check_outputs(input_files: Sequence[str], output: str, frames_dir: str = "") -> None:
    """Refuse, before any work, outputs that would overwrite an input or cannot be written:
    ``output`` must be a new or replaceable ``.mp4`` file that is none of ``input_files``;
    ``frames_dir`` (optional) must be a folder, or not exist yet, that holds no input
    frame (a video file beside the drawn frames is fine)."""
    inputs = {os.path.realpath(path) for path in input_files}
    if not output.lower().endswith(VIDEO_EXTENSION):
        raise DemoOutputError(
            f"--output {output!r}: the demo writes MP4 video; give a name ending in "
            f"{VIDEO_EXTENSION}"
        )
    if os.path.isdir(output):
        raise DemoOutputError(f"--output {output!r} is a folder; give a file name")
    if os.path.realpath(output) in inputs:
        raise DemoOutputError(
            f"--output {output!r} is the input video and would be overwritten; write to "
            "another file"
        )
    _check_writable(output, "--output")
    if not frames_dir:
        return
    if os.path.exists(frames_dir) and not os.path.isdir(frames_dir):
        raise DemoOutputError(f"--frames-dir {frames_dir!r} exists and is not a folder")
    if os.path.realpath(frames_dir) == os.path.realpath(output):
        raise DemoOutputError("--frames-dir and --output are the same path")
    folder = os.path.realpath(frames_dir)
    inside = sorted(
        path
        for path in inputs
        if os.path.dirname(path) == folder and path.lower().endswith(IMAGE_EXTENSIONS)
    )
    if inside:
        raise DemoOutputError(
            f"--frames-dir {frames_dir!r} holds the input ({os.path.basename(inside[0])}"
            f"{' ...' if len(inside) > 1 else ''}): the drawn frames would overwrite or join "
            "the input frames; give another folder"
        )
    _check_writable(os.path.join(frames_dir, "00000.jpg"), "--frames-dir")


def _check_writable(path: str, flag: str) -> None:
    """The nearest existing folder above ``path`` must be writable (folders are created)."""
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise DemoOutputError(f"{flag} {path!r}: cannot write in {folder!r}")


def class_names_for(
    classes: str, checkpoint_extras: Dict[str, Any], cfg: CfgNode
) -> Optional[List[str]]:
    """The names to label predicted classes with, by priority:

    1. ``classes`` (``--classes``): a registered dataset name or comma-separated names;
    2. the names saved in the checkpoint (the training dataset's);
    3. the config's first test dataset, with a warning (a checkpoint without names);
    4. None (labels ``class k``).
    Raises UserInputError when the names do not match ``MODEL.VIS.NUM_CLASSES``."""
    num_classes = cfg.MODEL.VIS.NUM_CLASSES
    if classes:
        if classes in DatasetCatalog.list():
            names = list(MetadataCatalog.get(classes).get("thing_classes", []))
        else:
            names = [name.strip() for name in classes.split(",")]
        source = f"--classes {classes!r}"
    elif checkpoint_extras.get(CLASS_NAMES_KEY):
        return list(checkpoint_extras[CLASS_NAMES_KEY])
    elif len(cfg.DATASETS.TEST):
        names = list(MetadataCatalog.get(cfg.DATASETS.TEST[0]).get("thing_classes", []))
        source = f"DATASETS.TEST {cfg.DATASETS.TEST[0]!r}"
        if cfg.MODEL.WEIGHTS:
            logger.warning(
                "The checkpoint holds no class names (written by an older version): labels "
                "are the classes of %s; pass --classes if the model was trained on others.",
                source,
            )
    else:
        return None
    if len(names) != num_classes:
        unregistered = classes and "," not in classes and classes not in DatasetCatalog.list()
        hint = f" ({classes!r} is not a registered dataset either)" if unregistered else ""
        raise UserInputError(
            f"{source} gives {len(names)} class names but the model has "
            f"MODEL.VIS.NUM_CLASSES {num_classes}{hint}"
        )
    return names


def class_colors_for(
    classes: str, checkpoint_extras: Dict[str, Any], cfg: CfgNode
) -> Optional[List[List[int]]]:
    """RGB colour per class, from the same source as :func:`class_names_for` (a dataset
    given as ``--classes``, the checkpoint, the config's test dataset); None if it has none
    (instances then keep their track colours)."""
    if classes:
        dataset = classes if classes in DatasetCatalog.list() else None
    elif checkpoint_extras.get(CLASS_NAMES_KEY):
        return checkpoint_extras.get(CLASS_COLORS_KEY)
    else:
        dataset = cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else None
    return MetadataCatalog.get(dataset).get("thing_colors", None) if dataset else None


def run_demo(
    cfg: CfgNode,
    input_path: str,
    output: str,
    frames_dir: str = "",
    confidence: float = 0.5,
    fps: Optional[float] = None,
    classes: str = "",
    color_by: str = "instance",
) -> Dict[str, Any]:
    """Check the outputs, read, predict, draw and write; returns the model's output dict.
    ``color_by``: "instance" (one colour per track) or "class" (the class colours)."""
    if color_by not in ("instance", "class"):
        raise UserInputError(f"--color-by must be 'instance' or 'class', got {color_by!r}")
    check_outputs(video_input_files(input_path), output, frames_dir)
    frames, source_fps = read_video(input_path)
    fps = fps or source_fps or DEFAULT_FPS
    height, width = frames[0].shape[:2]
    logger.info("%s: %d frames of %dx%d at %.2f fps", input_path, len(frames), width, height, fps)
    predictor = VideoPredictor(cfg)
    class_names = class_names_for(classes, predictor.checkpoint_extras, cfg)
    class_colors = None
    if color_by == "class":
        class_colors = class_colors_for(classes, predictor.checkpoint_extras, cfg)
        if class_colors is None:
            logger.warning("No class colours known: instances keep their track colours.")
    prediction = predictor(frames)
    drawn = []
    frames_iter = draw_video(frames, prediction, confidence, class_names, class_colors)
    for t, image in enumerate(tqdm(frames_iter, total=len(frames), desc="drawing", unit="frame")):
        drawn.append(image)
        if frames_dir:
            write_image(os.path.join(frames_dir, f"{t:05d}.jpg"), image)
    write_video(output, drawn, fps)
    logger.info("wrote %s", output)
    return prediction
