"""Registries of the model's heads (the backbone uses detectron2's BACKBONE_REGISTRY)."""

from detectron2.utils.registry import Registry

PIXEL_DECODER_REGISTRY = Registry("PIXEL_DECODER")
PIXEL_DECODER_REGISTRY.__doc__ = """
Pixel decoders: per-frame multi-scale features and mask features from backbone features.
Built by ``build_pixel_decoder(cfg, input_shape)`` from ``cfg.MODEL.PIXEL_DECODER.NAME``.
"""

TRANSFORMER_DECODER_REGISTRY = Registry("TRANSFORMER_DECODER")
TRANSFORMER_DECODER_REGISTRY.__doc__ = """
Transformer decoders: clip-level class logits and per-frame mask embeddings from the
pixel decoder's outputs. Built from ``cfg.MODEL.TRANSFORMER_DECODER.NAME``.
"""


def build_pixel_decoder(cfg, input_shape):
    return PIXEL_DECODER_REGISTRY.get(cfg.MODEL.PIXEL_DECODER.NAME)(cfg, input_shape)


def build_transformer_decoder(cfg, in_channels: int, mask_dim: int):
    name = cfg.MODEL.TRANSFORMER_DECODER.NAME
    return TRANSFORMER_DECODER_REGISTRY.get(name)(cfg, in_channels=in_channels, mask_dim=mask_dim)
