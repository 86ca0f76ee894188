"""TeViT's STQI head: box decoding, RoI levels and mask pasting by hand; output shapes;
the shared self-attention makes the frames of a clip interact, and only those."""

import math

import torch

from ifr.modeling.transformer_decoder.tevit import (
    NOT_THIS_CLASS,
    TeViTSTQIHead,
    decode_box_deltas,
    paste_mask_logits,
    roi_levels,
    select_class_candidates,
)

K, N, D = 3, 5, 32


def _head(num_stages: int = 2, class_agnostic: bool = True, top_k: int = 4) -> TeViTSTQIHead:
    torch.manual_seed(0)
    return TeViTSTQIHead(
        num_classes=K,
        num_queries=N,
        hidden_dim=D,
        num_stages=num_stages,
        nheads=4,
        dim_feedforward=64,
        dynamic_dim=8,
        box_pool=7,
        mask_pool=14,
        mask_convs=2,
        num_cls_fcs=1,
        num_reg_fcs=2,
        class_agnostic_masks=class_agnostic,
        top_k=top_k,
    )


def _features(batch: int, frames: int, height: int = 64, width: int = 96):
    """[P5, P4, P3] and P2 of a (batch, frames) clip of height x width frames."""
    torch.manual_seed(1)
    multi_scale = [torch.randn(batch, frames, D, height // s, width // s) for s in (32, 16, 8)]
    return multi_scale, torch.randn(batch, frames, D, height // 4, width // 4)


def test_decode_box_deltas_by_hand():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    assert torch.allclose(decode_box_deltas(boxes, torch.zeros(1, 4)), boxes)
    # dx 0.2 x std 0.5 = 0.1 of the width: centre 5 -> 6; dw log 2 x std 1: width 10 -> 20
    refined = decode_box_deltas(boxes, torch.tensor([[0.2, 0.0, math.log(2), 0.0]]))
    assert torch.allclose(refined, torch.tensor([[-4.0, 0.0, 16.0, 20.0]]))


def test_roi_levels_follow_the_box_scale():
    sides = torch.tensor([10.0, 56.0, 111.0, 112.0, 224.0, 448.0, 2000.0])
    boxes = torch.stack([torch.zeros(7), torch.zeros(7), sides, sides], dim=1)
    assert roi_levels(boxes, 4).tolist() == [0, 0, 0, 1, 2, 3, 3]


def test_paste_mask_logits_puts_the_box_mask_in_the_box():
    # A box mask certain in its left half, absent in its right half, in the box x 8..24,
    # y 0..16 of a 32 x 32 input; grid stride 4 (8 x 8 cells centred at 2, 6, ..., 30).
    mask = torch.full((1, 28, 28), -20.0)
    mask[0, :, :14] = 20.0
    pasted = paste_mask_logits(mask, torch.tensor([[8.0, 0.0, 24.0, 16.0]]), (8, 8), 4)[0]
    probs = pasted.sigmoid()
    assert (probs[:4, 2:4] > 0.99).all()  # x centres 10, 14: left half of the box
    assert (probs[:4, 4:6] < 0.01).all()  # x centres 18, 22: right half
    assert (probs[4:] < 0.01).all() and (probs[:, :2] < 0.01).all()  # outside the box


def test_training_output_shapes():
    head = _head(num_stages=3).train()
    multi_scale, p2 = _features(2, 3)
    out = head(multi_scale, p2, return_masks=True)
    assert out["pred_logits"].shape == (2, N, 3, K)
    assert out["pred_boxes"].shape == (2, N, 3, 4)
    assert out["attn_feats"].shape == (2, N, 3, D)
    assert out["image_size"] == (64, 96)
    assert [aux["stage"] for aux in out["aux_outputs"]] == [0, 1]
    # Initial boxes are the whole image; stage 0's refinement starts at zero deltas.
    assert torch.allclose(out["aux_outputs"][0]["pred_boxes"], torch.tensor([0.0, 0, 1, 1]))
    masks = out["roi_mask_logits"](
        2, torch.tensor([0, 5]), torch.rand(2, 4).sort(-1)[0], torch.randn(2, D)
    )
    assert masks.shape == (2, 28, 28)


def test_inference_masks_are_one_hot_embeddings_over_pasted_maps():
    head = _head().eval()
    multi_scale, p2 = _features(1, 4)
    with torch.no_grad():
        out = head(multi_scale, p2, return_masks=False)
    features, embeds = out["mask_features"], out["pred_mask_embeds"]
    assert features.shape == (1, 4, N, 16, 24) and embeds.shape == (1, N, 4, N)
    masks = torch.einsum("bntc,btchw->bnthw", embeds, features)
    assert torch.equal(masks, features.transpose(1, 2))


def test_frames_of_a_clip_interact_through_the_shared_attention():
    head = _head().eval()
    multi_scale, p2 = _features(1, 2)
    changed_p2 = p2.clone()
    changed_p2[:, 1] += 1.0  # frame 1 only

    def frame0_logits(ms, p2_, frames):
        batch = 2 // frames  # the same two frames as one clip, or as two 1-frame clips
        reshape = lambda x: x.reshape(batch, frames, *x.shape[2:])  # noqa: E731
        with torch.no_grad():
            out = head([reshape(f) for f in ms], reshape(p2_), return_masks=False)
        return out["pred_logits"].transpose(1, 2).reshape(2, N, K)[0]

    assert not torch.allclose(
        frame0_logits(multi_scale, p2, 2), frame0_logits(multi_scale, changed_p2, 2)
    )
    assert torch.equal(frame0_logits(multi_scale, p2, 1), frame0_logits(multi_scale, changed_p2, 1))


def test_inference_masks_do_not_depend_on_the_roi_chunk(monkeypatch):
    import ifr.modeling.transformer_decoder.tevit as tevit

    head = _head().eval()
    multi_scale, p2 = _features(1, 3)
    with torch.no_grad():
        whole = head(multi_scale, p2, return_masks=False)["mask_features"]
        monkeypatch.setattr(tevit, "MASK_ROI_CHUNK", 4)  # 15 RoIs in chunks of 4
        chunked = head(multi_scale, p2, return_masks=False)["mask_features"]
    assert torch.allclose(whole, chunked, atol=1e-5)


def test_class_candidates_are_the_top_pairs_of_mean_score():
    # 2 queries, 2 frames, 3 classes; mean scores (query, class) chosen by hand.
    probs = torch.tensor(
        [[[0.9, 0.1, 0.5], [0.7, 0.3, 0.5]], [[0.2, 0.8, 0.6], [0.4, 0.8, 0.2]]]
    )  # (N, T, K): means q0 = (0.8, 0.2, 0.5), q1 = (0.3, 0.8, 0.4)
    outputs = {
        "pred_logits": torch.logit(probs)[None],
        "pred_boxes": torch.arange(16.0).view(1, 2, 2, 4),
        "attn_feats": torch.arange(8.0).view(1, 2, 2, 2),
    }
    picked = select_class_candidates(outputs, top_k=3)
    # The top three pairs: (q0, c0) 0.8, (q1, c1) 0.8, (q0, c2) 0.5 (q0 twice).
    pairs = set(
        zip(picked["candidate_queries"][0].tolist(), picked["candidate_labels"][0].tolist())
    )
    assert pairs == {(0, 0), (1, 1), (0, 2)}
    for j, (q, c) in enumerate(
        zip(picked["candidate_queries"][0].tolist(), picked["candidate_labels"][0].tolist())
    ):
        logits = picked["pred_logits"][0, j]  # (T, K)
        assert torch.allclose(logits[:, c], torch.logit(probs[q, :, c]))
        others = [k for k in range(3) if k != c]
        assert (logits[:, others] == NOT_THIS_CLASS).all()
        assert (logits[:, others].sigmoid() == 0).all()  # never selected with another class
        assert torch.equal(picked["pred_boxes"][0, j], outputs["pred_boxes"][0, q])
        assert torch.equal(picked["attn_feats"][0, j], outputs["attn_feats"][0, q])


def test_class_specific_mask_reads_the_channel_of_its_class():
    agnostic, specific = _head(class_agnostic=True), _head(class_agnostic=False)
    specific.load_state_dict(
        {k: v for k, v in agnostic.state_dict().items() if "conv_logits" not in k}, strict=False
    )
    last = specific.mask_heads[-1].conv_logits
    assert last.weight.shape[0] == K
    with torch.no_grad():  # channel 2 is the class-agnostic head's only channel
        last.weight[2] = agnostic.mask_heads[-1].conv_logits.weight[0]
        last.bias[2] = agnostic.mask_heads[-1].conv_logits.bias[0]
    multi_scale, p2 = _features(1, 2)
    args = (
        0 + 1,
        torch.tensor([0, 1]),
        torch.tensor([[0.1, 0.1, 0.6, 0.7]] * 2),
        torch.randn(2, D),
    )
    outs = []
    for head in (agnostic, specific):
        head.train()
        outs.append(head(multi_scale, p2, return_masks=True)["roi_mask_logits"])
    reference = outs[0](*args)
    assert torch.allclose(outs[1](*args, torch.tensor([2, 2])), reference, atol=1e-6)
    assert not torch.allclose(outs[1](*args, torch.tensor([0, 2]))[0], reference[0])


def test_class_specific_inference_hands_on_top_k_pair_candidates():
    head = _head(class_agnostic=False, top_k=4).eval()
    multi_scale, p2 = _features(1, 3)
    with torch.no_grad():
        out = head(multi_scale, p2, return_masks=False)
    assert out["pred_logits"].shape == (1, 4, 3, K)
    assert out["mask_features"].shape == (1, 3, 4, 16, 24)
    assert out["pred_mask_embeds"].shape == (1, 4, 3, 4)
    # Each candidate's mask is its query's mask head read in its class's channel.
    queries, labels = out["candidate_queries"][0], out["candidate_labels"][0]
    with torch.no_grad():  # the training outputs give the masks of any RoI
        train_out = head(multi_scale, p2, return_masks=True)
    j, frame = 1, 2
    assert torch.equal(out["attn_feats"][0, j], train_out["attn_feats"][0, queries[j]])
    box = out["pred_boxes"][0, j, frame]
    logits = train_out["roi_mask_logits"](
        len(head.stages) - 1,
        torch.tensor([frame]),
        box[None],
        out["attn_feats"][0, j, frame][None],
        labels[j : j + 1],
    )
    expected = paste_mask_logits(logits, box[None] * torch.tensor([96.0, 64, 96, 64]), (16, 24), 4)
    assert torch.allclose(out["mask_features"][0, frame, j], expected[0], atol=1e-4)
    assert queries.shape == labels.shape == (4,)


def test_initial_boxes_cover_the_image_before_padding(monkeypatch):
    """TeViT's proposals start as the image (its ``img_shape``), not the padded input; the
    boxes are normalised by that size."""
    import ifr.modeling.transformer_decoder.tevit as tevit

    seen = []
    original = tevit.multilevel_roi_align

    def record(levels, rois, size, strides):
        seen.append(rois.clone())
        return original(levels, rois, size, strides)

    monkeypatch.setattr(tevit, "multilevel_roi_align", record)
    head = _head().eval()
    multi_scale, p2 = _features(2, 2)  # padded 64 x 96
    with torch.no_grad():
        out = head(multi_scale, p2, return_masks=True, image_sizes=[(48, 80), (64, 96)])
    first = seen[0].view(2, 2, N, 5)  # (clip, frame, query, (frame, x1, y1, x2, y2))
    assert torch.equal(first[0, :, :, 1:], torch.tensor([0.0, 0, 80, 48]).expand(2, N, 4))
    assert torch.equal(first[1, :, :, 1:], torch.tensor([0.0, 0, 96, 64]).expand(2, N, 4))
    # stage 0 starts at zero deltas: its boxes are the whole image, normalised to (0, 0, 1, 1)
    assert torch.allclose(out["aux_outputs"][0]["pred_boxes"], torch.tensor([0.0, 0, 1, 1]))
