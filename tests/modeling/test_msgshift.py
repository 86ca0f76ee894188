"""MsgShifT (TeViT's backbone): the messenger shift by hand, convolutions on messenger
tokens, output strides, frames communicating only through messengers, and ImageNet
PVTv2 weights in their published key layout."""

import logging

import pytest
import torch
from torch import nn

from ifr.checkpoint import IFRCheckpointer
from ifr.checkpoint.backbones import pvt_v2_official_to_d2
from ifr.checkpoint.files import CONVERTERS, to_detectron2_checkpoint
from ifr.modeling.backbone.msgshift import (
    MsgShifT,
    _conv_on_tokens,
    messenger_shift,
    shift_schedule,
)
from ifr.utils.tensor_io import CheckpointFormatError

TINY = dict(
    embed_dims=(8, 16, 16, 24),
    depths=(2, 1, 2, 2),
    num_heads=(1, 2, 2, 4),
    mlp_ratios=(2, 2, 2, 2),
    sr_ratios=(4, 2, 2, 1),
    num_messengers=4,
    shift_strides=(1, -1),
    drop_path_rate=0.0,
)


def test_messenger_shift_by_hand():
    # 2 clips x 3 frames, 4 tokens (2 groups of 2), 1 channel: value = 100 b + 10 t + m.
    values = torch.tensor(
        [[[100 * b + 10 * t + m] for m in range(4)] for b in range(2) for t in range(3)],
        dtype=torch.float,
    )
    out = messenger_shift(values, num_frames=3, strides=[1, -1]).view(2, 3, 4)
    for b in range(2):
        for t in range(3):
            # group 0 (tokens 0, 1) comes from frame t - 1, group 1 from frame t + 1 (cyclic)
            assert out[b, t, :2].tolist() == [100 * b + 10 * ((t - 1) % 3) + m for m in (0, 1)]
            assert out[b, t, 2:].tolist() == [100 * b + 10 * ((t + 1) % 3) + m for m in (2, 3)]


def test_shift_of_one_frame_is_identity_and_groups_must_divide():
    tokens = torch.randn(5, 4, 3)
    assert torch.equal(messenger_shift(tokens, 1, [1, -1, 2, -2]), tokens)
    with pytest.raises(ValueError, match="groups"):
        messenger_shift(tokens, 1, [1, -1, 2])


def test_shift_schedule_alternates_and_skips_last_odd_block():
    assert shift_schedule(2, [1, -1, 2, -2]) == [[1, -1, 2, -2], [-1, 1, -2, 2]]
    assert shift_schedule(3, [1, 2]) == [[1, 2], [-1, -2], None]


@pytest.mark.parametrize("groups", [1, 6])
def test_conv_on_tokens_is_the_conv_of_a_constant_image(groups):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 6, 3, padding=1, groups=groups)
    tokens = torch.randn(2, 5, 6)  # (N, M, C)
    image = tokens.permute(0, 2, 1)[..., None, None].expand(2, 6, 5, 7, 7)
    centre = conv(image.permute(0, 2, 1, 3, 4).reshape(10, 6, 7, 7))[:, :, 3, 3]
    assert torch.allclose(_conv_on_tokens(conv, tokens), centre.view(2, 5, 6), atol=1e-5)


def test_output_strides_and_channels():
    torch.manual_seed(0)
    model = MsgShifT(**TINY).eval()
    maps = model(torch.randn(4, 3, 70, 100), num_frames=2)
    sizes = [(18, 25), (9, 13), (5, 7), (3, 4)]  # ceil(70 / s), ceil(100 / s), s = 4..32
    assert [tuple(m.shape) for m in maps] == [(4, c, *hw) for c, hw in zip((8, 16, 16, 24), sizes)]


def test_frames_communicate_only_through_messengers():
    torch.manual_seed(0)
    model = MsgShifT(**TINY).eval()
    clip = torch.randn(2, 3, 64, 64)
    changed = clip.clone()
    changed[1] += 1.0  # change frame 1 only
    with torch.no_grad():
        as_clip = model(clip, num_frames=2)[-1][0], model(changed, num_frames=2)[-1][0]
        as_images = model(clip, num_frames=1)[-1][0], model(changed, num_frames=1)[-1][0]
    assert not torch.allclose(*as_clip)  # frame 0 heard from frame 1
    assert torch.equal(*as_images)  # separate images: nothing travels


def test_num_frames_must_divide_the_batch():
    with pytest.raises(ValueError, match="clips of 3"):
        MsgShifT(**TINY)(torch.randn(4, 3, 32, 32), num_frames=3)


# Names of the published ImageNet PVTv2 checkpoint (whai362/PVT, pvt_v2_b1.pth).
PUBLISHED_NAMES = [
    "patch_embed1.proj.weight",
    "patch_embed1.norm.bias",
    "block1.0.norm1.weight",
    "block1.0.attn.q.weight",
    "block1.0.attn.kv.bias",
    "block1.0.attn.proj.weight",
    "block1.0.attn.sr.weight",
    "block1.0.attn.norm.weight",
    "block1.1.mlp.fc1.weight",
    "block1.1.mlp.dwconv.dwconv.weight",
    "block1.1.mlp.fc2.bias",
    "norm1.weight",
    "block4.1.attn.kv.weight",
    "norm4.bias",
]


def _published_state_dict(model: MsgShifT) -> dict:
    """A fake ImageNet checkpoint in the published layout: every backbone tensor (random
    values) but the messenger tokens, plus the classifier."""
    state = {k: torch.randn_like(v) for k, v in model.state_dict().items() if k != "msg_tokens"}
    state["head.weight"] = torch.randn(1000, model.embed_dims[-1])
    state["head.bias"] = torch.randn(1000)
    return state


def test_published_pvt_v2_names_are_the_backbone_names():
    names = set(MsgShifT(**TINY).state_dict())
    assert set(PUBLISHED_NAMES) <= names
    assert "block4.0.attn.sr.weight" not in names  # stage 4 has no spatial reduction


def test_published_checkpoint_loads_through_the_safe_loader(tmp_path, caplog):
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = MsgShifT(**TINY)

    model = Wrapper()
    published = _published_state_dict(model.backbone)
    path = tmp_path / "pvt_v2_fake.pth"
    torch.save(to_detectron2_checkpoint(CONVERTERS["pvt-v2"](published)), path)
    with caplog.at_level(logging.INFO):
        IFRCheckpointer(model).load(str(path), checkpointables=[])
    state = model.backbone.state_dict()
    for name in PUBLISHED_NAMES:
        assert torch.equal(state[name], published[name])
    total = len(state)
    assert f"loaded {total - 1} of {total} model tensors" in caplog.text
    assert "msg_tokens" in caplog.text  # the one tensor left at its initialisation


def test_converter_refuses_a_foreign_checkpoint():
    with pytest.raises(CheckpointFormatError, match="layer1.0.conv1.weight"):
        pvt_v2_official_to_d2({"layer1.0.conv1.weight": torch.zeros(1)}, source="r50.pth")
