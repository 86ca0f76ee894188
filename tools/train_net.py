#!/usr/bin/env python
"""Train or evaluate IFR, the Detectron2 way.

    python tools/train_net.py --config-file configs/ytvis19/swin_l.yaml --num-gpus 8
    python tools/train_net.py --config-file CFG --resume                 # continue a run
    python tools/train_net.py --config-file CFG --eval-only MODEL.WEIGHTS model_final.pth
    (multi-node: --num-machines N --machine-rank R --dist-url tcp://HOST:PORT)
"""
import ifr  # noqa: F401  (registers datasets and model components)
from ifr.engine.defaults import argument_parser, main
from ifr.engine.launch import launch

if __name__ == "__main__":
    args = argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
