import torch

from ifr.inference.postprocess import compute_mask_logits, select_topk_probs, upsample_mask_logits


def test_select_topk_over_query_class_pairs():
    probs = torch.tensor([[0.1, 0.9, 0.2], [0.8, 0.05, 0.95]])
    scores, labels, query_idx = select_topk_probs(probs, 3)
    assert torch.allclose(scores, torch.tensor([0.95, 0.9, 0.8]))
    assert labels.tolist() == [2, 1, 0]
    assert query_idx.tolist() == [1, 0, 1]


def test_select_topk_clamps_k_to_the_number_of_pairs():
    scores, labels, query_idx = select_topk_probs(torch.full((2, 2), 0.5), 10)
    assert len(scores) == len(labels) == len(query_idx) == 4


def test_upsample_crops_the_padding_before_resizing():
    # Mask-feature grid 2x2 over a padded 8x8 input; the image is the top half (4x8),
    # the bottom row is padding with a negative logit that must not leak in.
    logits = torch.tensor([[10.0, 10.0], [-10.0, -10.0]])[None, None]
    out = upsample_mask_logits(logits, padded_size=(8, 8), image_size=(4, 8), output_size=(6, 12))
    assert out.shape == (1, 1, 6, 12)
    # After the crop the image rows hold logits interpolated between the two feature
    # rows; without the crop the lower half of the output would be negative.
    assert (out > 0).all()


def test_upsample_of_a_constant_is_constant():
    logits = torch.full((3, 2, 4, 5), 1.5)
    out = upsample_mask_logits(logits, (16, 20), (13, 17), (30, 41))
    assert out.shape == (3, 2, 30, 41)
    assert torch.allclose(out, torch.full_like(out, 1.5))


def test_mask_logits_are_per_frame_dot_products():
    embeds = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # (k=1, t=2, C=2)
    features = torch.zeros(2, 2, 1, 3)
    features[0, 0] = torch.tensor([1.0, 2.0, 3.0])
    features[1, 1] = torch.tensor([-1.0, 0.0, 1.0])
    logits = compute_mask_logits(embeds, features)
    assert logits.shape == (1, 2, 1, 3)
    assert logits[0, 0, 0].tolist() == [1.0, 2.0, 3.0]
    assert logits[0, 1, 0].tolist() == [-2.0, 0.0, 2.0]
