#!/usr/bin/env python
"""Convert outside weights to a detectron2 checkpoint for MODEL.WEIGHTS.

    python tools/convert_pretrained.py --kind swin swin_tiny_patch4_window7_224.pth swin_tiny.pth
    python tools/convert_pretrained.py --kind torchvision-resnet resnet50-0676ba61.pth R-50.pth
    python tools/convert_pretrained.py --kind tevit queryinst_pvt_v2_b1_coco.pth tevit_init.pth

Backbone kinds (swin, torchvision-resnet, pvt-v2) write ``backbone.*`` weights only, the
heads start random (or come from a Mask2Former checkpoint); whole-model kinds (vistr,
detr-vistr, tevit) write every converted tensor under its model name (a trained VisTR or
TeViT file may also be given to MODEL.WEIGHTS as it is). One line reports the tensors
read and written and what was left out, and why. See ifr/checkpoint/files.py. Bad input
ends with one ``error:`` line (``--traceback`` shows the traceback).
"""

import argparse
import sys

from ifr.checkpoint.files import CONVERTERS, convert_checkpoint
from ifr.engine.cli import raise_on_argparse_error, run_tool
from ifr.utils.paths import check_output_is_not_input


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="checkpoint to convert (.pth/.pt/.bin/.safetensors)")
    parser.add_argument("output", help="detectron2 checkpoint to write (.pth)")
    parser.add_argument(
        "--kind", required=True, choices=sorted(CONVERTERS), help="naming of the input"
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="unpickle arbitrary Python objects in the input (only for files you trust)",
    )
    return raise_on_argparse_error(parser).parse_args(argv)


def main(argv=None) -> int:
    """Converts; bad input raises (one ``error:`` line through ``run_tool``)."""
    args = parse_args(argv)
    check_output_is_not_input("output", args.output, {"input": args.input})
    convert_checkpoint(args.input, args.output, args.kind, allow_pickle=args.allow_pickle)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
