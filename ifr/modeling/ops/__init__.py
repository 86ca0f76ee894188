"""Operators with a pure-PyTorch implementation behind one function each, so that a
faster kernel can replace them without touching the modules that call them."""

from .ms_deform_attn import MSDA_IMPLS, MSDeformAttn, ms_deform_attn, resolve_msda_impl

__all__ = ["MSDA_IMPLS", "MSDeformAttn", "ms_deform_attn", "resolve_msda_impl"]
