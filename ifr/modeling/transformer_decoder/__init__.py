"""Transformer decoders, one module per system (registered in
``TRANSFORMER_DECODER_REGISTRY``, chosen by ``MODEL.TRANSFORMER_DECODER.NAME``)."""
from .ifr import IFRTransformerDecoder

__all__ = ["IFRTransformerDecoder"]
