#!/usr/bin/env python
"""Hold out videos of a YouTube-VIS train set as a validation set with ground truth.

    python tools/split_ytvis.py datasets/ytvis_2019/train.json --num-val 400 --seed 0

writes ``train_sub.json`` and ``val_sub.json`` next to the input (or in ``--out-dir``);
``import ifr`` then registers ``ytvis_2019_train_sub`` / ``ytvis_2019_val_sub``.
"""

import argparse
import logging
import os
import sys
from typing import List, Optional

from ifr.data.datasets import YTVISFormatError
from ifr.data.split import split_ytvis_json
from ifr.engine.cli import EXIT_ERROR, run_tool


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("train_json", help="YouTube-VIS train annotation file")
    parser.add_argument("--out-dir", default=None, help="default: the folder of train_json")
    parser.add_argument(
        "--num-val", type=int, default=400, help="videos held out (the paper's ablation: 400)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the video permutation")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Returns the exit status: 0, or 1 with a one-line error (malformed input file, e.g.
    duplicate video or annotation ids; impossible --num-val); nothing is written then."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out_dir = args.out_dir or os.path.dirname(os.path.abspath(args.train_json))
    try:
        train_path, val_path = split_ytvis_json(args.train_json, out_dir, args.num_val, args.seed)
    except (YTVISFormatError, ValueError) as e:
        print(f"split_ytvis.py: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(f"wrote {train_path}\nwrote {val_path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))  # any other bad input (e.g. a missing file): one line too
