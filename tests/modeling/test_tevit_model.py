"""TeViT as a meta-architecture: the tiny config trains (a few iterations on one clip
lower the loss) and infers through the shared inference; the published config builds and
loads ImageNet PVTv2 weights in their public layout; wrong parts are refused."""

import logging
import os

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import BitMasks, Instances

from ifr.checkpoint import IFRCheckpointer
from ifr.checkpoint.files import CONVERTERS, to_detectron2_checkpoint
from ifr.engine.defaults import build_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "configs", "tiny", "tevit_tiny.yaml")
PUBLISHED = os.path.join(ROOT, "configs", "ytvis19", "tevit_msgshift.yaml")
PUBLISHED_21 = os.path.join(ROOT, "configs", "ytvis21", "tevit_msgshift.yaml")
SMALL = ["MODEL.VIS.NUM_QUERIES", "5", "MODEL.TEVIT.NUM_STAGES", "2"]


def _clip(num_frames: int = 3, height: int = 64, width: int = 96) -> dict:
    """Two moving squares of classes 0 and 2; the second is absent from frame 1."""
    frames, per_frame = [], []
    for t in range(num_frames):
        image = torch.full((3, height, width), 40, dtype=torch.uint8)
        masks = torch.zeros(2, height, width, dtype=torch.bool)
        masks[0, 8 + 2 * t : 30 + 2 * t, 10:40] = True
        if t != 1:
            masks[1, 36:60, 50 + 3 * t : 86 + 3 * t] = True
        image[0][masks[0]] = 220
        image[2][masks[1]] = 200
        instances = Instances((height, width))
        instances.gt_masks = BitMasks(masks)
        instances.gt_classes = torch.tensor([0, 2])
        frames.append(image)
        per_frame.append(instances)
    return {"image": frames, "instances": per_frame, "height": height, "width": width}


def _tiny_model():
    torch.manual_seed(0)
    return build_model(build_cfg(TINY, SMALL))


def test_a_few_iterations_on_a_tiny_clip_lower_the_loss():
    model = _tiny_model().train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    clip = _clip()
    totals = []
    for _ in range(8):
        losses = model([clip])
        total = sum(losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert set(losses) >= {"loss_ce", "loss_bbox", "loss_giou", "loss_dice", "loss_dice_0"}
    assert totals[-1] < 0.8 * totals[0], totals


def test_every_parameter_gets_a_gradient():
    # (DistributedDataParallel without find_unused_parameters needs it)
    model = _tiny_model().train()
    sum(model([_clip()]).values()).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []


def test_inference_through_the_shared_pipeline():
    model = _tiny_model().eval()
    video = _clip(num_frames=5)
    del video["instances"]
    with torch.no_grad():
        (output,) = model([video])
    assert len(output["pred_scores"]) == 10  # MODEL.VIS.TEST.TOP_K
    assert all(len(rles) == 5 for rles in output["pred_masks"])
    assert all(0.0 <= s <= 1.0 for s in output["pred_scores"])


def test_class_probabilities_are_the_mean_over_frames():
    model = _tiny_model()
    logits = torch.tensor([[[0.0, 2.0], [2.0, -2.0]]])  # (N=1, T=2, K=2)
    expected = (torch.sigmoid(logits[0, 0]) + torch.sigmoid(logits[0, 1])) / 2
    assert torch.allclose(model.class_probabilities(logits)[0], expected)


def test_wrong_head_is_refused():
    cfg = build_cfg(TINY, SMALL + ["MODEL.PIXEL_DECODER.NAME", "MSDeformAttnPixelDecoder"])
    with pytest.raises(ValueError, match="TeViTFPN"):
        build_model(cfg)


@pytest.mark.slow
def test_published_config_loads_imagenet_pvt_v2_weights(tmp_path, caplog):
    cfg = build_cfg(PUBLISHED, ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", ""])
    model = build_model(cfg)
    backbone = model.backbone.state_dict()
    # the published pvt_v2_b1.pth layout: backbone names without prefix, plus the classifier
    published = {k: torch.randn_like(v) for k, v in backbone.items() if k != "msg_tokens"}
    published["head.weight"] = torch.randn(1000, 512)
    published["head.bias"] = torch.randn(1000)
    path = tmp_path / "pvt_v2_b1_d2.pth"
    torch.save(to_detectron2_checkpoint(CONVERTERS["pvt-v2"](published)), path)
    with caplog.at_level(logging.INFO):
        IFRCheckpointer(model).load(str(path), checkpointables=[])
    assert torch.equal(
        model.backbone.state_dict()["block2.1.attn.kv.weight"], published["block2.1.attn.kv.weight"]
    )
    total = len(model.state_dict())
    assert f"loaded {len(published) - 2} of {total} model tensors" in caplog.text
    assert "backbone.msg_tokens" in caplog.text


@pytest.mark.parametrize(
    "config, dataset", [(PUBLISHED, "ytvis_2019"), (PUBLISHED_21, "ytvis_2021")]
)
def test_published_configs_hold_tevit_recipe(config, dataset):
    cfg = build_cfg(config)
    assert cfg.DATASETS.TRAIN == (f"{dataset}_train",)
    assert cfg.MODEL.BACKBONE.NAME == "D2MsgShifT" and cfg.MODEL.TEVIT.NUM_STAGES == 6
    # hustvl/TeViT tevit_r50.py: AdamW 2.5e-4, backbone x0.1, 9,200 iterations of 16 clips
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_ITER, cfg.SOLVER.IMS_PER_BATCH) == (
        0.00025,
        9200,
        16,
    )
    assert cfg.INPUT.SAMPLING_FRAME_NUM == 5 and cfg.MODEL.VIS.TEST.TOP_K == 10


@pytest.mark.parametrize("config", [PUBLISHED, PUBLISHED_21], ids=os.path.basename)
def test_published_configs_hold_tevit_model_loss_and_data_values(config):
    """The rest of hustvl/TeViT's recipe, as literals: tevit_r50.py / tevit_msgshift.py
    (head, losses, costs, schedule), _base_/datasets/youtubevis.py (sizes) and
    YoutubeVISDataset.prepare_train_clip (clip sampling)."""
    cfg = build_cfg(config)
    m, t = cfg.MODEL.MSGSHIFT, cfg.MODEL.TEVIT
    assert tuple(m.EMBED_DIMS) == (64, 128, 320, 512) and tuple(m.DEPTHS) == (2, 2, 2, 2)
    assert (m.NUM_MESSENGERS, tuple(m.SHIFT_STRIDES)) == (32, (1, -1, 2, -2))
    assert (cfg.MODEL.VIS.NUM_QUERIES, t.FPN_DIM, t.NUM_STAGES) == (100, 256, 6)
    assert (t.NHEADS, t.DIM_FEEDFORWARD) == (8, 2048)
    assert (t.DYNAMIC_DIM, t.BOX_POOL, t.MASK_POOL, t.MASK_CONVS) == (64, 7, 14, 4)
    assert (t.NUM_CLS_FCS, t.NUM_REG_FCS) == (1, 3)
    assert (t.CLASS_WEIGHT, t.BBOX_WEIGHT, t.GIOU_WEIGHT, t.DICE_WEIGHT) == (2.0, 5.0, 2.0, 8.0)
    assert (t.COST_CLASS, t.COST_BBOX, t.COST_GIOU) == (2.0, 5.0, 2.0)
    s = cfg.SOLVER
    assert (s.STEPS, s.WARMUP_ITERS, s.WARMUP_FACTOR) == ((6100, 8500), 770, 0.001)
    assert (s.BACKBONE_MULTIPLIER, s.CLIP_GRADIENTS.CLIP_VALUE) == (0.1, 0.1)
    # mmdetection's AdamW decays every parameter alike
    assert s.WEIGHT_DECAY == s.WEIGHT_DECAY_NORM == s.WEIGHT_DECAY_EMBED == 1e-4
    assert (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST) == (360, 640)
    # a clip is its reference frame plus 4 frames drawn from the whole video, unsorted
    assert cfg.INPUT.SAMPLING_FRAME_RANGE >= 36 and cfg.INPUT.SAMPLING_FRAME_SHUFFLE
