"""Pixel decoders, one module each; importing this package registers them all in
``PIXEL_DECODER_REGISTRY`` (``MODEL.PIXEL_DECODER.NAME``):

- ``MSDeformAttnPixelDecoder`` (``msdeform_attn.py``): Mask2Former's multi-scale
  deformable-attention encoder and FPN (IFR, Mask2Former-VIS);
- ``IFCInputProjection`` (``ifc.py``): IFC's projection of the last backbone level;
- ``TeViTFPN`` (``tevit.py``): TeViT's FPN.
"""

from .ifc import IFCInputProjection
from .msdeform_attn import MSDeformAttnPixelDecoder
from .tevit import TeViTFPN

__all__ = ["IFCInputProjection", "MSDeformAttnPixelDecoder", "TeViTFPN"]
