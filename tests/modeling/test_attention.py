"""Tests of ifr/modeling/layers.py against attention written out by hand."""

import pytest
import torch
from torch.nn import functional as F

from ifr.modeling.attention import MLP, CrossAttentionLayer, FFNLayer, SelfAttentionLayer


def reference_attention(mha, query, key, value, attn_mask=None):
    """Multi-head attention written out, sequence-first (S, B, C); bool mask True = masked."""
    num_heads, dim = mha.num_heads, mha.embed_dim
    head_dim = dim // num_heads
    w_q, w_k, w_v = mha.in_proj_weight.split(dim)
    b_q, b_k, b_v = mha.in_proj_bias.split(dim)
    q, k, v = query @ w_q.T + b_q, key @ w_k.T + b_k, value @ w_v.T + b_v
    length, batch = q.shape[:2]

    def heads(x):  # (S, B, C) -> (B, H, S, c)
        return x.reshape(x.shape[0], batch, num_heads, head_dim).permute(1, 2, 0, 3)

    scores = heads(q) @ heads(k).transpose(-1, -2) / head_dim**0.5
    if attn_mask is not None:
        scores = scores.masked_fill(attn_mask.reshape(batch, num_heads, length, -1), float("-inf"))
    out = scores.softmax(-1) @ heads(v)  # (B, H, L, c)
    out = out.permute(2, 0, 1, 3).reshape(length, batch, dim)
    return out @ mha.out_proj.weight.T + mha.out_proj.bias


def test_state_dict_names_are_mask2formers():
    assert set(SelfAttentionLayer(8, 2).state_dict()) == {
        "self_attn.in_proj_weight",
        "self_attn.in_proj_bias",
        "self_attn.out_proj.weight",
        "self_attn.out_proj.bias",
        "norm.weight",
        "norm.bias",
    }
    assert set(CrossAttentionLayer(8, 2).state_dict()) == {
        "multihead_attn.in_proj_weight",
        "multihead_attn.in_proj_bias",
        "multihead_attn.out_proj.weight",
        "multihead_attn.out_proj.bias",
        "norm.weight",
        "norm.bias",
    }
    assert set(FFNLayer(8, 16).state_dict()) == {
        "linear1.weight",
        "linear1.bias",
        "linear2.weight",
        "linear2.bias",
        "norm.weight",
        "norm.bias",
    }
    assert set(MLP(8, 16, 4, 3).state_dict()) == {
        f"layers.{i}.{p}" for i in range(3) for p in ("weight", "bias")
    }


def test_self_attention_post_norm_matches_equations():
    layer = SelfAttentionLayer(8, 2).eval()
    tgt, pos = torch.randn(5, 3, 8), torch.randn(5, 3, 8)
    expected = F.layer_norm(
        tgt + reference_attention(layer.self_attn, tgt + pos, tgt + pos, tgt), (8,)
    )
    torch.testing.assert_close(layer(tgt, query_pos=pos), expected)


def test_self_attention_pre_norm_matches_equations():
    layer = SelfAttentionLayer(8, 2, normalize_before=True).eval()
    with torch.no_grad():
        layer.norm.weight.uniform_(0.5, 1.5)
    tgt, pos = torch.randn(5, 3, 8), torch.randn(5, 3, 8)
    normed = layer.norm(tgt)
    expected = tgt + reference_attention(layer.self_attn, normed + pos, normed + pos, normed)
    torch.testing.assert_close(layer(tgt, query_pos=pos), expected)


def test_cross_attention_adds_positions_to_keys_not_values():
    layer = CrossAttentionLayer(8, 2).eval()
    tgt, query_pos = torch.randn(4, 2, 8), torch.randn(4, 2, 8)
    memory, pos = torch.randn(6, 2, 8), torch.randn(6, 2, 8)
    expected = F.layer_norm(
        tgt + reference_attention(layer.multihead_attn, tgt + query_pos, memory + pos, memory), (8,)
    )
    torch.testing.assert_close(layer(tgt, memory, pos=pos, query_pos=query_pos), expected)


def test_cross_attention_mask_hides_memory_positions():
    layer = CrossAttentionLayer(8, 2).eval()
    tgt, memory = torch.randn(4, 2, 8), torch.randn(6, 2, 8)
    mask = torch.zeros(2 * 2, 4, 6, dtype=torch.bool)
    mask[..., 3:] = True  # every query of every head ignores memory positions 3..5
    out = layer(tgt, memory, memory_mask=mask)
    torch.testing.assert_close(out, layer(tgt, memory[:3]))
    perturbed = memory.clone()
    perturbed[3:] += 10.0
    torch.testing.assert_close(layer(tgt, perturbed, memory_mask=mask), out)
    assert not torch.allclose(layer(tgt, perturbed), layer(tgt, memory))


def test_ffn_matches_equations_post_and_pre_norm():
    x = torch.randn(3, 2, 8)
    post = FFNLayer(8, 16).eval()
    hidden = F.relu(x @ post.linear1.weight.T + post.linear1.bias)
    expected = F.layer_norm(x + hidden @ post.linear2.weight.T + post.linear2.bias, (8,))
    torch.testing.assert_close(post(x), expected)

    pre = FFNLayer(8, 16, normalize_before=True).eval()
    hidden = F.relu(F.layer_norm(x, (8,)) @ pre.linear1.weight.T + pre.linear1.bias)
    torch.testing.assert_close(pre(x), x + hidden @ pre.linear2.weight.T + pre.linear2.bias)


def test_mlp_relu_between_layers_not_after_last():
    mlp = MLP(4, 6, 3, num_layers=3)
    assert [(fc.in_features, fc.out_features) for fc in mlp.layers] == [(4, 6), (6, 6), (6, 3)]
    x = torch.randn(10, 4)
    h = F.relu(mlp.layers[0](x))
    h = F.relu(mlp.layers[1](h))
    expected = mlp.layers[2](h)
    torch.testing.assert_close(mlp(x), expected)
    with torch.no_grad():
        mlp.layers[2].bias.fill_(-100.0)
    assert (mlp(x) < 0).all()  # no ReLU on the output


def test_mlp_single_layer_is_linear_and_zero_layers_is_refused():
    mlp = MLP(4, 6, 3, num_layers=1)
    x = torch.randn(2, 4)
    torch.testing.assert_close(mlp(x), mlp.layers[0](x))
    with pytest.raises(ValueError, match="num_layers"):
        MLP(4, 6, 3, num_layers=0)


def test_dropout_is_applied_in_training_only():
    layer = FFNLayer(8, 16, dropout=0.5)
    x = torch.randn(20, 2, 8)
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))
    layer.train()
    assert not torch.allclose(layer(x), layer(x))
