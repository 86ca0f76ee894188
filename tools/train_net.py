#!/usr/bin/env python
"""Train or evaluate IFR, the Detectron2 way.

    python tools/train_net.py --config-file configs/ytvis19/swin_l.yaml --num-gpus 8
    python tools/train_net.py --config-file CFG --resume                 # continue a run
    python tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS model_final.pth
    python tools/train_net.py --eval-only MODEL.WEIGHTS output/run/model_final.pth
        (without --config-file: the config.yaml the training saved beside the weights)
    (multi-node: --num-machines N --machine-rank R --dist-url tcp://HOST:PORT)

Bad input (config key, dataset, checkpoint) ends with one ``error:`` line; ``--traceback``
or ``IFR_TRACEBACK=1`` shows the traceback.
"""

import sys
from typing import List, Optional

import ifr  # noqa: F401  (registers datasets and model components)
from ifr.engine.cli import run_tool
from ifr.engine.defaults import argument_parser, check_run, config_beside_weights
from ifr.engine.defaults import main as run_process
from ifr.engine.launch import launch


def main(argv: Optional[List[str]] = None) -> int:
    args = argument_parser().parse_args(argv)
    if args.eval_only:
        args.config_file = config_beside_weights(args.config_file, args.opts)
    print("Command Line Args:", args)
    check_run(args)  # config, datasets, weights file: before any process starts
    launch(
        run_process,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(main))
