"""Tests of ifr/modeling/criterion/ (IFRCriterion on the shared base): Eq. (5)-(7) by
hand, the cross-frame terms, lambda_e."""

import math

import pytest
import torch
from detectron2.projects.point_rend.point_features import point_sample

from ifr.modeling.criterion import IFRCriterion, build_weight_dict
from ifr.modeling.criterion.ifr import cross_frame_point_logits, off_diagonal_frame_pairs
from ifr.modeling.matcher import VideoHungarianMatcher

CROSS_KEYS = {"loss_mask_cross", "loss_dice_cross"}


def _criterion(
    lambda_e=0.3,
    num_aux=0,
    matcher=None,
    num_classes=3,
    num_points=12,
    clip_mask_weight=0.0,
    clip_weights_in_dict=True,
    **kwargs,
):
    matcher = matcher or VideoHungarianMatcher(
        cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=16
    )
    dict_clip_weight = clip_mask_weight if clip_weights_in_dict else 0.0
    return IFRCriterion(
        num_classes=num_classes,
        matcher=matcher,
        weight_dict=build_weight_dict(2.0, 5.0, 5.0, lambda_e, num_aux, dict_clip_weight),
        lambda_e=lambda_e,
        clip_mask_weight=clip_mask_weight,
        num_points=num_points,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
        **kwargs,
    )


def _decoder_like_output(batch=2, queries=4, frames=2, channels=6, size=4, classes=3):
    """An output dict as the decoder gives it, all leaves requiring gradients."""
    embeds = torch.randn(batch, queries, frames, channels, requires_grad=True)
    features = torch.randn(batch, frames, channels, size, size, requires_grad=True)
    return {
        "pred_logits": torch.randn(batch, queries, classes, requires_grad=True),
        "pred_masks": torch.randn(batch, queries, frames, size, size, requires_grad=True),
        "pred_mask_embeds": embeds,
        "mask_features": features,
    }


def _targets(frames=2, size=16):
    """Video 0: 2 instances, the second absent from the last frame; video 1: 1 instance."""
    masks0 = (torch.rand(2, frames, size, size) > 0.5).float()
    masks0[1, -1] = 0
    return [
        {"labels": torch.tensor([0, 2]), "masks": masks0},
        {"labels": torch.tensor([1]), "masks": (torch.rand(1, frames, size, size) > 0.5).float()},
    ]


def _weighted_total(losses, weight_dict):
    return sum(losses[k] * weight_dict[k] for k in losses)


# ---------------------------------------------------------------- cross-frame logits


def test_cross_frame_logits_at_pixel_centres_equal_the_dot_product_by_hand():
    frames, channels, height, width = 3, 4, 3, 5
    embeds = torch.randn(2, frames, channels, dtype=torch.float64)
    features = torch.randn(frames, channels, height, width, dtype=torch.float64)
    # Each (instance, frame t2) has its own pixels; at pixel centres bilinear sampling is exact.
    pixels = torch.stack(
        [torch.randint(0, height, (2, frames, 6)), torch.randint(0, width, (2, frames, 6))], -1
    )
    centres = pixels.double() + 0.5
    coords = torch.stack([centres[..., 1] / width, centres[..., 0] / height], -1)  # (x, y)

    logits = cross_frame_point_logits(embeds, features, coords)

    assert logits.shape == (2, frames, frames, 6)
    for m in range(2):
        for t1 in range(frames):
            for t2 in range(frames):
                for p in range(6):
                    y, x = pixels[m, t2, p].tolist()
                    expected = (embeds[m, t1] * features[t2, :, y, x]).sum()
                    torch.testing.assert_close(logits[m, t1, t2, p], expected)


def test_cross_frame_logits_equal_embedding_dot_point_sampled_features():
    frames, channels = 2, 5
    embeds = torch.randn(3, frames, channels, dtype=torch.float64)
    features = torch.randn(frames, channels, 4, 6, dtype=torch.float64)
    coords = torch.rand(3, frames, 7, 2, dtype=torch.float64)
    logits = cross_frame_point_logits(embeds, features, coords)
    for m in range(3):
        for t2 in range(frames):
            sampled = point_sample(features[t2 : t2 + 1], coords[m, t2][None], align_corners=False)[
                0
            ]
            for t1 in range(frames):
                torch.testing.assert_close(logits[m, t1, t2], embeds[m, t1] @ sampled)


def test_off_diagonal_frame_pairs_keeps_t1_major_order():
    values = torch.arange(9.0).view(1, 3, 3, 1)  # value 3 * t1 + t2
    assert off_diagonal_frame_pairs(values).flatten().tolist() == [1, 2, 3, 5, 6, 7]
    assert off_diagonal_frame_pairs(torch.zeros(2, 1, 1, 4)).shape == (0, 4)


# ---------------------------------------------------------------- Eq. (5)-(7) by hand


def _sigmoid(x):
    return 1 / (1 + math.exp(-x))


def _bce(x, t):
    return -(t * math.log(_sigmoid(x)) + (1 - t) * math.log(1 - _sigmoid(x)))


def _dice_term(xs, ts):
    ps = [_sigmoid(x) for x in xs]
    return 1 - (2 * sum(p * t for p, t in zip(ps, ts)) + 1) / (sum(ps) + sum(ts) + 1)


def _focal(x, t, alpha=0.25, gamma=2.0):
    p = _sigmoid(x)
    p_t = p * t + (1 - p) * (1 - t)
    return (alpha * t + (1 - alpha) * (1 - t)) * (1 - p_t) ** gamma * _bce(x, t)


def test_losses_of_a_tiny_clip_equal_eq5_to_eq7_by_hand(fixed_matcher):
    # One video, N = 2 queries, K = 2 classes, T = 2 frames, C = 2, masks 2x2 (targets 8x8).
    embeds = torch.tensor([[[0.3, -0.2], [0.1, 0.4]], [[1.0, -0.5], [-0.7, 0.2]]])  # (N, T, C)
    features = torch.tensor(
        [
            [[[1.0, -2.0], [0.5, 3.0]], [[0.2, 0.0], [-1.0, 1.5]]],
            [[[-0.5, 2.5], [1.0, -1.0]], [[2.0, 0.3], [0.4, -2.0]]],
        ]
    )  # (T, C, h, w)
    class_logits = torch.tensor([[0.5, -1.0], [-0.2, 1.2]])
    gt = torch.zeros(1, 2, 8, 8)
    gt[0, 0, :, :4] = 1  # frame 0: left half; frame 1: absent (all zero)
    outputs = {
        "pred_logits": class_logits[None],
        "pred_masks": torch.einsum("ntc,tchw->nthw", embeds, features)[None],
        "pred_mask_embeds": embeds[None],
        "mask_features": features[None],
    }
    targets = [{"labels": torch.tensor([1]), "masks": gt}]
    criterion = _criterion(matcher=fixed_matcher([([1], [0])]), num_classes=2, num_points=4)
    pixels = [(0, 0), (0, 1), (1, 0), (1, 1)]  # (y, x) of the 2x2 mask
    centres = torch.tensor([[(x + 0.5) / 2, (y + 0.5) / 2] for y, x in pixels])
    criterion._sample_uncertain_points = lambda src: centres.expand(
        src.shape[0], src.shape[1], 4, 2
    )

    losses = criterion(outputs, targets)

    def logit(t1, t2, y, x):  # mask_embed(Q^{t1}) . mask_features_{t2} of matched query 1
        return sum(embeds[1, t1, c].item() * features[t2, c, y, x].item() for c in range(2))

    truth = [[1.0 if x == 0 else 0.0 for _, x in pixels], [0.0] * 4]  # gt per frame at the pixels
    own = [[logit(t, t, y, x) for y, x in pixels] for t in range(2)]
    cross = {(t1, t2): [logit(t1, t2, y, x) for y, x in pixels] for t1, t2 in [(0, 1), (1, 0)]}
    expected = {
        "loss_ce": sum(
            _focal(class_logits[q, k].item(), 1.0 if (q, k) == (1, 1) else 0.0)
            for q in range(2)
            for k in range(2)
        ),
        "loss_mask": sum(sum(_bce(x, g) for x, g in zip(own[t], truth[t])) / 4 for t in range(2)),
        "loss_dice": sum(_dice_term(own[t], truth[t]) for t in range(2)),
        "loss_mask_cross": sum(
            sum(_bce(x, g) for x, g in zip(xs, truth[t2])) / 4 for (_, t2), xs in cross.items()
        ),
        "loss_dice_cross": sum(_dice_term(xs, truth[t2]) for (_, t2), xs in cross.items()),
    }
    assert set(losses) == set(expected)
    for key, value in expected.items():
        assert losses[key].item() == pytest.approx(value, rel=1e-5), key


# ---------------------------------------------------------------- lambda_e


def _losses_with_seed(criterion, outputs, targets, seed=123):
    torch.manual_seed(seed)
    return criterion(outputs, targets)


def test_lambda_e_zero_removes_exactly_the_cross_frame_terms():
    outputs = _decoder_like_output()
    outputs["aux_outputs"] = [{k: v for k, v in _decoder_like_output().items()} for _ in range(2)]
    targets = _targets()
    with_cross = _criterion(lambda_e=0.3, num_aux=2)
    without_cross = _criterion(lambda_e=0.0, num_aux=2)

    losses_on = _losses_with_seed(with_cross, outputs, targets)
    losses_off = _losses_with_seed(without_cross, outputs, targets)

    cross_keys = {k for k in losses_on if k.startswith(("loss_mask_cross", "loss_dice_cross"))}
    assert cross_keys == {f"{k}{s}" for k in CROSS_KEYS for s in ("", "_0", "_1")}
    assert set(losses_off) == set(losses_on) - cross_keys
    for key, value in losses_off.items():
        assert torch.equal(value, losses_on[key]), key
    cross_sum = sum(5.0 * losses_on[k] for k in cross_keys)  # lambda_m = lambda_D = 5
    total_on = _weighted_total(losses_on, with_cross.weight_dict)
    total_off = _weighted_total(losses_off, without_cross.weight_dict)
    torch.testing.assert_close(total_on - total_off, 0.3 * cross_sum)
    assert all(losses_on[k] > 0 for k in cross_keys)


def test_lambda_e_must_have_weights_and_be_non_negative(fixed_matcher):
    matcher = fixed_matcher([])
    with pytest.raises(ValueError, match="loss_mask_cross"):
        IFRCriterion(
            num_classes=3,
            matcher=matcher,
            weight_dict=build_weight_dict(2, 5, 5, 0.0, 0),
            lambda_e=0.3,
            num_points=4,
            oversample_ratio=3.0,
            importance_sample_ratio=0.75,
        )
    with pytest.raises(ValueError, match="lambda_e"):
        build_weight_dict(2, 5, 5, -0.1, 0)


def test_build_weight_dict():
    weights = build_weight_dict(2.0, 5.0, 4.0, 0.5, num_aux=3)
    assert weights["loss_ce"] == 2.0 and weights["loss_mask"] == 5.0 and weights["loss_dice"] == 4.0
    assert weights["loss_mask_cross"] == 2.5 and weights["loss_dice_cross"] == 2.0
    assert weights["loss_dice_cross_2"] == 2.0 and "loss_ce_3" not in weights
    assert len(weights) == 5 * 4
    assert set(build_weight_dict(2.0, 5.0, 4.0, 0.0, num_aux=1)) == {
        "loss_ce",
        "loss_mask",
        "loss_dice",
        "loss_ce_0",
        "loss_mask_0",
        "loss_dice_0",
    }


# ---------------------------------------------------------------- gradients, edge cases


def test_cross_terms_send_gradients_to_embeddings_and_features_only():
    outputs = _decoder_like_output()
    losses = _criterion()(outputs, _targets())
    (losses["loss_mask_cross"] + losses["loss_dice_cross"]).backward()
    assert outputs["pred_mask_embeds"].grad.abs().sum() > 0
    assert outputs["mask_features"].grad.abs().sum() > 0
    assert outputs["pred_masks"].grad is None


def test_per_frame_terms_send_gradients_to_pred_masks_only():
    outputs = _decoder_like_output()
    losses = _criterion()(outputs, _targets())
    (losses["loss_mask"] + losses["loss_dice"]).backward()
    assert outputs["pred_masks"].grad.abs().sum() > 0
    assert outputs["pred_mask_embeds"].grad is None


def test_single_frame_clip_has_zero_cross_terms():
    outputs = _decoder_like_output(frames=1)
    losses = _criterion()(outputs, _targets(frames=1))
    assert losses["loss_mask_cross"].item() == 0 and losses["loss_dice_cross"].item() == 0
    assert losses["loss_mask"].item() > 0
    sum(losses.values()).backward()
    assert outputs["pred_masks"].grad.abs().sum() > 0


def test_batch_without_instances():
    outputs = _decoder_like_output(batch=2)
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 2, 16, 16)}
    losses = _criterion()(outputs, [empty, dict(empty)])
    for key in ("loss_mask", "loss_dice", "loss_mask_cross", "loss_dice_cross"):
        assert losses[key].item() == 0, key
    logits = outputs["pred_logits"].detach().double()
    expected_ce = sum(_focal(x, 0.0) for x in logits.flatten().tolist())  # num_masks clamped to 1
    assert losses["loss_ce"].item() == pytest.approx(expected_ce, rel=1e-5)
    sum(losses.values()).backward()
    assert outputs["pred_masks"].grad is not None and outputs["mask_features"].grad is not None


def test_num_masks_normalises_by_instances_in_the_batch(fixed_matcher):
    outputs = _decoder_like_output(batch=1, frames=1)
    gt = torch.zeros(1, 1, 16, 16)
    gt[0, 0, :8] = 1
    one = [{"labels": torch.tensor([0]), "masks": gt}]
    # The same instance twice, matched to the same query twice: twice the sum, twice num_masks.
    two = [{"labels": torch.tensor([0, 0]), "masks": gt.repeat(2, 1, 1, 1)}]
    criterion_one = _criterion(lambda_e=0.0, matcher=fixed_matcher([([1], [0])]))
    criterion_two = _criterion(lambda_e=0.0, matcher=fixed_matcher([([1, 1], [0, 1])]))
    criterion_one._sample_uncertain_points = criterion_two._sample_uncertain_points = lambda src: (
        torch.full((src.shape[0], src.shape[1], 12, 2), 0.3)
    )
    losses_one, losses_two = criterion_one(outputs, one), criterion_two(outputs, two)
    torch.testing.assert_close(losses_one["loss_mask"], losses_two["loss_mask"])
    torch.testing.assert_close(losses_one["loss_dice"], losses_two["loss_dice"])


def test_num_masks_is_averaged_over_processes(monkeypatch):
    import ifr.modeling.criterion.base as criterion_module

    outputs = _decoder_like_output()
    targets = _targets()  # 3 instances here
    single = _losses_with_seed(_criterion(), outputs, targets)

    def all_reduce_with_a_second_process_of_5_instances(tensor):
        tensor += 5

    monkeypatch.setattr(criterion_module.comm, "get_world_size", lambda: 2)
    monkeypatch.setattr(
        criterion_module.dist, "all_reduce", all_reduce_with_a_second_process_of_5_instances
    )
    averaged = _losses_with_seed(_criterion(), outputs, targets)
    for key, value in single.items():  # num_masks: 3 alone, (3 + 5) / 2 = 4 averaged
        torch.testing.assert_close(averaged[key], value * 3 / 4)


def test_deep_supervision_adds_suffixed_losses():
    outputs = _decoder_like_output()
    outputs["aux_outputs"] = [_decoder_like_output(), _decoder_like_output()]
    keys = {"loss_ce", "loss_mask", "loss_dice"} | CROSS_KEYS
    losses = _criterion(num_aux=2)(outputs, _targets())
    assert set(losses) == keys | {f"{k}_{i}" for k in keys for i in range(2)}
    losses = _criterion(num_aux=2, deep_supervision=False)(outputs, _targets())
    assert set(losses) == keys


def test_bad_inputs_are_named():
    outputs = _decoder_like_output()
    targets = _targets()
    targets[1]["labels"] = torch.tensor([3])
    with pytest.raises(ValueError, match=r"targets\[1\]\['labels'\]"):
        _criterion()(outputs, targets)
    targets = _targets(frames=3)
    with pytest.raises(ValueError, match=r"targets\[0\]\['masks'\]"):
        _criterion()(outputs, targets)
    del outputs["mask_features"]
    with pytest.raises(KeyError, match="mask_features"):
        _criterion()(outputs, _targets())
    _criterion(lambda_e=0.0)(outputs, _targets())  # without cross terms it is not needed


def test_criterion_from_config(make_cfg):
    cfg = make_cfg()
    cfg.MODEL.VIS.DEC_LAYERS = 3
    criterion = IFRCriterion(cfg)
    assert isinstance(criterion.matcher, VideoHungarianMatcher)
    assert criterion.num_classes == 40 and criterion.lambda_e == 0.3
    assert criterion.weight_dict["loss_mask_cross_2"] == pytest.approx(0.3 * 5.0)
    assert "loss_ce_3" not in criterion.weight_dict


# ---------------------------------------------------------------- clip-level mask loss
def test_build_weight_dict_clip_mask_terms():
    weights = build_weight_dict(2.0, 5.0, 4.0, 0.0, num_aux=1, clip_mask_weight=0.5)
    assert weights["loss_mask_clip"] == 2.5 and weights["loss_dice_clip"] == 2.0
    assert weights["loss_mask_clip_0"] == 2.5 and "loss_mask_cross" not in weights
    assert "loss_mask_clip" not in build_weight_dict(2.0, 5.0, 4.0, 0.3, num_aux=1)
    with pytest.raises(ValueError, match="clip_mask_weight"):
        build_weight_dict(2, 5, 5, 0.3, 0, clip_mask_weight=-1.0)


def test_clip_mask_loss_equals_the_frame_mask_loss_when_every_frame_query_is_the_clip_query():
    """If every frame's mask embedding is the clip query's, the clip query's mask of frame t
    is the frame mask of t, so the clip terms equal the per-frame terms (same points)."""
    torch.manual_seed(0)
    outputs = _decoder_like_output(frames=3)
    clip_embeds = torch.randn(2, 4, 6)
    frame_embeds = clip_embeds[:, :, None].expand(-1, -1, 3, -1)
    outputs["pred_mask_embeds"] = frame_embeds
    outputs["pred_clip_mask_embeds"] = clip_embeds
    outputs["pred_masks"] = torch.einsum(
        "bntc,btchw->bnthw", frame_embeds, outputs["mask_features"]
    )
    losses = _criterion(lambda_e=0.0, clip_mask_weight=1.0)(outputs, _targets(frames=3))
    assert "loss_mask_cross" not in losses
    torch.testing.assert_close(losses["loss_mask_clip"], losses["loss_mask"])
    torch.testing.assert_close(losses["loss_dice_clip"], losses["loss_dice"])


def test_clip_mask_loss_needs_its_weights_and_the_clip_embeddings():
    with pytest.raises(ValueError, match="clip_mask_weight=0.5"):
        _criterion(lambda_e=0.0, clip_mask_weight=0.5, clip_weights_in_dict=False)
    criterion = _criterion(lambda_e=0.0, clip_mask_weight=0.5)
    with pytest.raises(KeyError, match="pred_clip_mask_embeds"):
        criterion(_decoder_like_output(), _targets())
