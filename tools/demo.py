#!/usr/bin/env python
"""Run a trained model (any of the five systems) on a video and write it back with each
instance drawn in one colour.

    python tools/demo.py --config-file configs/ytvis19/r50.yaml --input video.mp4 \\
        --output out.mp4 [--frames-dir out_frames/] [--confidence 0.5] MODEL.WEIGHTS model.pth
    python tools/demo.py --input video.mp4 --output out.mp4 \\
        MODEL.WEIGHTS output/run/model_final.pth
    (without --config-file: the config.yaml its training saved beside the weights)

``--input`` is a video file, a folder of frames (sorted by name) or a quoted glob
('frames/*.jpg'). The output has the input's frame rate (``--fps`` for frames, default 24).
Instances are labelled with the class names saved in the checkpoint (``--classes`` gives
others). Outputs that would overwrite an input are refused before anything runs; bad input
ends with one ``error:`` line (``--traceback`` shows the traceback).
"""

import argparse
import logging
import sys
from typing import List, Optional

import ifr  # noqa: F401  (registers datasets and model components)
from ifr.engine.cli import raise_on_argparse_error, run_tool
from ifr.engine.defaults import build_cfg, config_beside_weights
from ifr.engine.demo import run_demo
from ifr.utils.video_io import DEFAULT_FPS


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config-file",
        default="",
        metavar="FILE",
        help="default: the config.yaml saved beside MODEL.WEIGHTS by its training run",
    )
    parser.add_argument("--input", required=True, help="video file, frame folder or 'glob*.jpg'")
    parser.add_argument("--output", required=True, help="output video (.mp4)")
    parser.add_argument(
        "--frames-dir", default="", help="also write every drawn frame as JPEG here"
    )
    parser.add_argument(
        "--confidence", type=probability, default=0.5, help="minimum score of a drawn instance"
    )
    parser.add_argument(
        "--fps",
        type=positive_float,
        default=None,
        help=f"output frame rate (default: the input video's; {DEFAULT_FPS} for frames)",
    )
    parser.add_argument(
        "--classes",
        default="",
        help="class names: a registered dataset name or 'name1,name2,...' (default: the "
        "names saved in the checkpoint, else the config's test dataset)",
    )
    parser.add_argument(
        "--color-by",
        choices=("instance", "class"),
        default="instance",
        help="one colour per instance (default) or per class (the classes' colours)",
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides", default=[]
    )
    return raise_on_argparse_error(parser)


def main(argv: Optional[List[str]] = None) -> dict:
    """Runs the demo; returns the model's output dict (errors propagate)."""
    logging.basicConfig(level=logging.INFO)
    args = argument_parser().parse_args(argv)
    cfg = build_cfg(config_beside_weights(args.config_file, args.opts), args.opts)
    cfg.freeze()
    return run_demo(
        cfg,
        args.input,
        args.output,
        frames_dir=args.frames_dir,
        confidence=args.confidence,
        fps=args.fps,
        classes=args.classes,
        color_by=args.color_by,
    )


if __name__ == "__main__":
    sys.exit(run_tool(main))
