"""Operators with a pure-PyTorch implementation behind one function each, so that a
faster kernel can replace them without touching the modules that call them."""

from .ms_deform_attn import MSDeformAttn, ms_deform_attn

__all__ = ["MSDeformAttn", "ms_deform_attn"]
