#!/usr/bin/env python
"""Run IFR on a video and write it back with each instance drawn in one colour.

    python tools/demo.py --config-file configs/ytvis19/r50.yaml --input video.mp4 \\
        --output out.mp4 [--frames-dir out_frames/] [--confidence 0.5] MODEL.WEIGHTS model.pth

``--input`` is a video file, a folder of frames (sorted by name) or a quoted glob
('frames/*.jpg'). The output has the input's frame rate (``--fps`` for frames, default 24).
"""

import argparse
import logging
import os
import sys
from typing import List, Optional

from tqdm import tqdm

import ifr  # noqa: F401  (registers datasets and model components)
from ifr.engine.defaults import build_cfg
from ifr.inference.predictor import VideoPredictor
from ifr.inference.visualize import draw_video
from ifr.utils.video_io import DEFAULT_FPS, read_video, write_image, write_video

logger = logging.getLogger("ifr.demo")


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument("--input", required=True, help="video file, frame folder or 'glob*.jpg'")
    parser.add_argument("--output", required=True, help="output .mp4")
    parser.add_argument(
        "--frames-dir", default="", help="also write every drawn frame as JPEG here"
    )
    parser.add_argument(
        "--confidence", type=float, default=0.5, help="minimum score of a drawn instance"
    )
    parser.add_argument(
        "--fps",
        type=float,
        default=None,
        help=f"frame rate for frame inputs (default {DEFAULT_FPS})",
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides", default=[]
    )
    return parser


def class_names_of(predictor: VideoPredictor) -> Optional[List[str]]:
    if predictor.metadata is None:
        return None
    return predictor.metadata.get("thing_classes", None)


def run_demo(args: argparse.Namespace) -> dict:
    """Read, predict, draw and write; returns the model's output dict."""
    frames, source_fps = read_video(args.input)
    fps = args.fps or source_fps or DEFAULT_FPS
    logger.info(
        "%s: %d frames of %dx%d at %.2f fps",
        args.input,
        len(frames),
        frames[0].shape[1],
        frames[0].shape[0],
        fps,
    )
    cfg = build_cfg(args.config_file, args.opts)
    cfg.freeze()
    predictor = VideoPredictor(cfg)
    output = predictor(frames)
    drawn = []
    frames_iter = draw_video(frames, output, args.confidence, class_names_of(predictor))
    for t, image in enumerate(tqdm(frames_iter, total=len(frames), desc="drawing", unit="frame")):
        drawn.append(image)
        if args.frames_dir:
            write_image(os.path.join(args.frames_dir, f"{t:05d}.jpg"), image)
    write_video(args.output, drawn, fps)
    logger.info("wrote %s", args.output)
    return output


def main(argv: Optional[List[str]] = None) -> dict:
    logging.basicConfig(level=logging.INFO)
    return run_demo(argument_parser().parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
