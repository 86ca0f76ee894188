#!/usr/bin/env python
"""Record what a refactor must not change, and compare two records.

    python tools/fingerprint.py record before.pt            # on the old code
    python tools/fingerprint.py record after.pt             # on the new code
    python tools/fingerprint.py compare before.pt after.pt  # exit 1 on any difference

A record holds, for each config (default: the five tiny ones), at fixed seeds: the
state_dict of a freshly built model, the losses and gradients of one training batch, and
the outputs of whole-video, per-clip and test-time-augmented inference of one val video.
``compare`` asks ``torch.equal`` of every tensor.
"""

import argparse
import os
import sys
from typing import List, Optional

import ifr  # noqa: F401  (registers datasets and model components)
from ifr.engine.cli import EXIT_ERROR, run_tool
from ifr.experiments.fingerprint import TINY_CONFIGS, compare_fingerprints, record_fingerprint


def argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    record = sub.add_parser("record", help="write the record of the current code")
    record.add_argument("output", help="the record to write (.pt)")
    record.add_argument(
        "--configs", nargs="+", default=list(TINY_CONFIGS), metavar="FILE", help="configs"
    )
    compare = sub.add_parser("compare", help="compare two records")
    compare.add_argument("before")
    compare.add_argument("after")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = argument_parser().parse_args(argv)
    if args.command == "record":
        record_fingerprint(args.configs, args.output, log=print)
        return 0
    differences = compare_fingerprints(args.before, args.after)
    for line in differences:
        print(line)
    name = os.path.basename
    print(f"{name(args.before)} vs {name(args.after)}: {len(differences)} differences")
    return EXIT_ERROR if differences else 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
