"""TeViT's spatiotemporal query interaction (STQI) head (Yang et al., "Temporally Efficient
Vision Transformer for Video Instance Segmentation", CVPR 2022): QueryInst on a clip.

Shape shorthand: B clips, T frames, N queries, K classes, d channels, R RoIs (one per
(clip, frame, query) or per selected one), S the RoI side (7 boxes, 14 masks).

The same N learnt queries (a d-dim feature and an initial box, the whole image before
padding) start in every frame; boxes are normalised by that size (``image_sizes``). Each
of the ``num_stages`` stages, as TeViT's ``STQIHead`` + ``DynamicMaskHead``:
1. RoIAlign of each query's box (per frame) from the FPN level its size selects;
2. multi-head self-attention among the N queries of a frame, then the SAME attention
   (shared weights and norm) among the T frames of each query: the temporal interaction;
3. dynamic convolution of the RoI features with kernels generated from the query
   (Sparse R-CNN's instance interaction), FFN;
4. class logits (sigmoid, per frame) and box deltas (per frame) refining the detached box;
5. the mask head: RoIAlign (14x14) of the refined boxes, a dynamic convolution with the
   query features of step 2, four 3x3 convolutions, a 2x deconvolution -> 28x28 logits.

Masks are class-specific as TeViT's (K channels, the target's or the predicted class's
read), or class-agnostic (one channel) with ``class_agnostic_masks``. At inference,
class-specific masks make each candidate a (query, class) pair, as TeViT's test: the
``top_k`` pairs of highest mean score are selected here, their masks read from their
class's channel, and each is handed on as a candidate whose logits are the query's in its
class and ``NOT_THIS_CLASS`` elsewhere, so the shared top-k selects exactly these pairs.

At inference a query's class probabilities are the mean over frames of its sigmoid
scores (as TeViT). The 28x28 masks (of every query with class-agnostic masks, of the top-k
pairs otherwise) are returned as ``pred_box_masks``, from which the shared inference
pastes the final masks at the original resolution (``BoxMaskPrediction``, as TeViT), and
pasted into the stride-4 grid as one-hot embeddings over those maps, which per-clip
tracking and test-time augmentation compare and fuse (there, the fused stride-4 logits
are upsampled).

RoIAlign is torchvision's (``aligned=True``, 2 samples per bin, as mmcv's) with
mmdetection's level rule written here (``roi_levels``).
"""

import math
from functools import partial
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.config import configurable
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.ops import box_convert, roi_align

from ...layers.box_masks import paste_mask_logits, paste_mask_probs
from ..registry import TRANSFORMER_DECODER_REGISTRY
from .common import masks_as_embeddings

__all__ = [
    "TeViTSTQIHead",
    "decode_box_deltas",
    "paste_mask_logits",
    "paste_mask_probs",
    "roi_levels",
    "select_class_candidates",
]

# mmdetection's RoI level rule: level = floor(log2(sqrt(area) / FINEST_SCALE)), clamped.
FINEST_SCALE = 56
# DeltaXYWHBBoxCoder of TeViT: target stds (means are 0) and the clamp of log-size deltas.
DELTA_STDS = (0.5, 0.5, 1.0, 1.0)
MAX_LOG_RATIO = abs(math.log(16 / 1000))
# RoIs through the mask head at once at inference (every query of every frame is masked).
MASK_ROI_CHUNK = 512
# Logit of a (query, class) candidate in the classes other than its own: sigmoid 0 in
# float32 and float16, so the shared top-k never selects the pair with another class.
NOT_THIS_CLASS = -1.0e4


def roi_levels(boxes: Tensor, num_levels: int) -> Tensor:
    """(R, 4) xyxy boxes -> (R,) FPN level index (0 = stride 4) by mmdetection's rule."""
    scale = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=0).sqrt()
    levels = torch.floor(torch.log2(scale / FINEST_SCALE + 1e-6))
    return levels.clamp(0, num_levels - 1).long()


def multilevel_roi_align(
    levels: List[Tensor], rois: Tensor, output_size: int, strides: List[int]
) -> Tensor:
    """RoI features from the level each box selects.

    Args:
        levels: per level (F, d, h_l, w_l) features of F frames; strides: their strides.
        rois: (R, 5) ``(frame index, x1, y1, x2, y2)`` in input pixels.
    Returns:
        (R, d, S, S) with S = ``output_size``.
    """
    out = rois.new_zeros((rois.shape[0], levels[0].shape[1], output_size, output_size))
    level_of = roi_levels(rois[:, 1:], len(levels))
    for i, (features, stride) in enumerate(zip(levels, strides)):
        index = torch.nonzero(level_of == i)[:, 0]
        if index.numel():
            out[index] = roi_align(
                features, rois[index], output_size, 1.0 / stride, sampling_ratio=2, aligned=True
            ).to(out.dtype)
        else:  # as mmdetection: a level no box selects stays in the graph (DDP)
            out = out + features.flatten()[0].to(out.dtype) * 0.0
    return out


def decode_box_deltas(boxes: Tensor, deltas: Tensor) -> Tensor:
    """TeViT's DeltaXYWHBBoxCoder (means 0, stds 0.5/0.5/1/1, no clipping to the image):
    (R, 4) xyxy boxes and (R, 4) deltas -> refined (R, 4) xyxy boxes."""
    deltas = deltas * deltas.new_tensor(DELTA_STDS)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = boxes[:, 2:] - boxes[:, :2]
    centre = centre + size * deltas[:, :2]
    size = size * deltas[:, 2:].clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO).exp()
    return torch.cat([centre - size / 2, centre + size / 2], dim=1)


class DynamicConv(nn.Module):
    """Sparse R-CNN's dynamic instance interaction: two 1x1 "convolutions" of the RoI
    features whose kernels are generated from the query feature; with ``with_proj`` the
    result is flattened and projected to one d-vector per RoI."""

    def __init__(self, dim: int, hidden: int, pool: int, with_proj: bool):
        super().__init__()
        self.dim, self.hidden = dim, hidden
        self.dynamic_layer = nn.Linear(dim, 2 * dim * hidden)
        self.norm_in = nn.LayerNorm(hidden)
        self.norm_out = nn.LayerNorm(dim)
        self.with_proj = with_proj
        if with_proj:
            self.fc_layer = nn.Linear(dim * pool * pool, dim)
            self.fc_norm = nn.LayerNorm(dim)

    def forward(self, queries: Tensor, roi_features: Tensor) -> Tensor:
        """queries (R, d), roi_features (R, d, S, S) -> (R, d), or (R, S*S, d) without
        the projection."""
        features = roi_features.flatten(2).transpose(1, 2)  # (R, S*S, d)
        params = self.dynamic_layer(queries)
        param_in = params[:, : self.dim * self.hidden].view(-1, self.dim, self.hidden)
        param_out = params[:, self.dim * self.hidden :].view(-1, self.hidden, self.dim)
        features = F.relu(self.norm_in(torch.bmm(features, param_in)))
        features = F.relu(self.norm_out(torch.bmm(features, param_out)))
        if not self.with_proj:
            return features
        return F.relu(self.fc_norm(self.fc_layer(features.flatten(1))))


def _fcs(dim: int, num: int) -> nn.Sequential:
    """``num`` x (Linear without bias, LayerNorm, ReLU), DIIHead's class/box branches."""
    layers = []
    for _ in range(num):
        layers += [nn.Linear(dim, dim, bias=False), nn.LayerNorm(dim), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class STQIStage(nn.Module):
    """One stage of the box/class head (TeViT's ``STQIHead``)."""

    def __init__(
        self,
        *,
        num_classes,
        dim,
        nheads,
        dim_feedforward,
        dynamic_dim,
        pool,
        num_cls_fcs,
        num_reg_fcs,
    ):
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, nheads, batch_first=True)
        self.attention_norm = nn.LayerNorm(dim)
        self.instance_interactive_conv = DynamicConv(dim, dynamic_dim, pool, with_proj=True)
        self.instance_interactive_conv_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, dim_feedforward), nn.ReLU(inplace=True), nn.Linear(dim_feedforward, dim)
        )
        self.ffn_norm = nn.LayerNorm(dim)
        self.cls_fcs = _fcs(dim, num_cls_fcs)
        self.reg_fcs = _fcs(dim, num_reg_fcs)
        self.fc_cls = nn.Linear(dim, num_classes)
        self.fc_reg = nn.Linear(dim, 4)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        nn.init.constant_(self.fc_cls.bias, -math.log((1 - 0.01) / 0.01))  # focal prior 0.01
        nn.init.zeros_(self.fc_reg.weight)
        nn.init.zeros_(self.fc_reg.bias)

    def _self_attention(self, x: Tensor) -> Tensor:
        return self.attention_norm(x + self.attention(x, x, x, need_weights=False)[0])

    def forward(self, roi_features: Tensor, queries: Tensor, num_frames: int):
        """
        Args:
            roi_features: (B*T*N, d, S, S), clip-major then frame then query.
            queries: (B*T, N, d) query features of every frame.
        Returns:
            logits (B*T, N, K), box deltas (B*T, N, 4), new queries (B*T, N, d) and the
            features after the self-attentions (B*T, N, d), read by the mask head.
        """
        bt, n, d = queries.shape
        queries = self._self_attention(queries)  # among the queries of a frame
        by_query = queries.view(-1, num_frames, n, d).transpose(1, 2).reshape(-1, num_frames, d)
        by_query = self._self_attention(by_query)  # among the frames of a query (shared)
        attn_feats = by_query.view(-1, n, num_frames, d).transpose(1, 2).reshape(bt, n, d)
        flat = attn_feats.reshape(-1, d)
        flat = self.instance_interactive_conv_norm(
            flat + self.instance_interactive_conv(flat, roi_features)
        )
        flat = self.ffn_norm(flat + self.ffn(flat))
        logits = self.fc_cls(self.cls_fcs(flat)).view(bt, n, -1)
        deltas = self.fc_reg(self.reg_fcs(flat)).view(bt, n, 4)
        return logits, deltas, flat.view(bt, n, d), attn_feats


class DynamicMaskHead(nn.Module):
    """QueryInst's mask head: dynamic convolution (no projection) of the 14x14 RoI
    features with the query, 3x3 convolutions with BatchNorm, a 2x deconvolution and a
    1x1 convolution to ``num_masks`` logits (K class-specific ones, or 1)."""

    def __init__(self, dim: int, dynamic_dim: int, pool: int, num_convs: int, num_masks: int):
        super().__init__()
        self.pool = pool
        self.instance_interactive_conv = DynamicConv(dim, dynamic_dim, pool, with_proj=False)
        convs = []
        for _ in range(num_convs):
            convs += [
                nn.Conv2d(dim, dim, 3, padding=1, bias=False),
                nn.BatchNorm2d(dim),
                nn.ReLU(inplace=True),
            ]
        self.convs = nn.Sequential(*convs)
        self.upsample = nn.ConvTranspose2d(dim, dim, 2, 2)
        self.conv_logits = nn.Conv2d(dim, num_masks, 1)
        for m in (self.upsample, self.conv_logits):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)

    def forward(self, queries: Tensor, roi_features: Tensor, labels: Optional[Tensor]) -> Tensor:
        """queries (R, d), roi_features (R, d, S, S), labels (R,) the class channel to
        read (ignored with one channel) -> (R, 2S, 2S) mask logits."""
        x = self.instance_interactive_conv(queries, roi_features)
        x = x.transpose(1, 2).reshape(-1, x.shape[2], self.pool, self.pool)
        logits = self.conv_logits(F.relu(self.upsample(self.convs(x))))
        if logits.shape[1] == 1:
            return logits[:, 0]
        if labels is None:
            raise ValueError("class-specific mask logits need the class of each RoI")
        return logits[torch.arange(len(logits), device=logits.device), labels]


@TRANSFORMER_DECODER_REGISTRY.register()
class TeViTSTQIHead(nn.Module):
    """TeViT's head (see the module docstring), in the transformer decoder's slot."""

    class_activation = "sigmoid"
    strides = [4, 8, 16, 32]
    uses_image_sizes = True  # given each clip's size before padding (``image_sizes``)

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        num_queries: int,
        hidden_dim: int,
        num_stages: int,
        nheads: int,
        dim_feedforward: int,
        dynamic_dim: int,
        box_pool: int,
        mask_pool: int,
        mask_convs: int,
        num_cls_fcs: int,
        num_reg_fcs: int,
        class_agnostic_masks: bool = False,
        top_k: int = 10,
    ):
        """
        Args:
            num_classes: K; num_queries: N; hidden_dim: d (= the FPN's channels).
            num_stages: iterative stages (TeViT: 6), each with its own box and mask head.
            nheads, dim_feedforward: of the shared self-attention and the FFN.
            dynamic_dim: hidden channels of the dynamic convolutions (64).
            box_pool, mask_pool: RoIAlign sides (7, 14); mask_convs: 3x3 convs (4).
            num_cls_fcs, num_reg_fcs: layers of the class (1) and box (3) branches.
            class_agnostic_masks: one mask logit per RoI instead of TeViT's K.
            top_k: (query, class) pairs kept at inference with class-specific masks (the
                shared inference's top-k, TeViT's ``max_per_img``).
        """
        super().__init__()
        self.num_queries = num_queries
        self.class_agnostic_masks = class_agnostic_masks
        self.top_k = top_k
        self.box_pool, self.mask_pool = box_pool, mask_pool
        self.init_proposal_features = nn.Embedding(num_queries, hidden_dim)
        self.init_proposal_bboxes = nn.Embedding(num_queries, 4)  # (cx, cy, w, h) / size
        nn.init.constant_(self.init_proposal_bboxes.weight[:, :2], 0.5)
        nn.init.constant_(self.init_proposal_bboxes.weight[:, 2:], 1.0)
        stage = partial(
            STQIStage,
            num_classes=num_classes,
            dim=hidden_dim,
            nheads=nheads,
            dim_feedforward=dim_feedforward,
            dynamic_dim=dynamic_dim,
            pool=box_pool,
            num_cls_fcs=num_cls_fcs,
            num_reg_fcs=num_reg_fcs,
        )
        self.stages = nn.ModuleList(stage() for _ in range(num_stages))
        num_masks = 1 if class_agnostic_masks else num_classes
        self.mask_heads = nn.ModuleList(
            DynamicMaskHead(hidden_dim, dynamic_dim, mask_pool, mask_convs, num_masks)
            for _ in range(num_stages)
        )

    @classmethod
    def from_config(cls, cfg, in_channels: int, mask_dim: int) -> dict:
        t = cfg.MODEL.TEVIT
        return {
            "num_classes": cfg.MODEL.VIS.NUM_CLASSES,
            "num_queries": cfg.MODEL.VIS.NUM_QUERIES,
            "hidden_dim": t.FPN_DIM,
            "num_stages": t.NUM_STAGES,
            "nheads": t.NHEADS,
            "dim_feedforward": t.DIM_FEEDFORWARD,
            "dynamic_dim": t.DYNAMIC_DIM,
            "box_pool": t.BOX_POOL,
            "mask_pool": t.MASK_POOL,
            "mask_convs": t.MASK_CONVS,
            "num_cls_fcs": t.NUM_CLS_FCS,
            "num_reg_fcs": t.NUM_REG_FCS,
            "class_agnostic_masks": t.CLASS_AGNOSTIC_MASKS,
            "top_k": cfg.MODEL.VIS.TEST.TOP_K,
        }

    def forward(
        self,
        multi_scale: List[Tensor],
        mask_features: Tensor,
        return_masks: bool = True,
        image_sizes: Optional[Sequence[Tuple[int, int]]] = None,
    ) -> Dict[str, object]:
        """
        Args:
            multi_scale: [P5, P4, P3], each (B, T, d, h_l, w_l); mask_features: P2
                (B, T, d, H/4, W/4) (``TeViTFPN``).
            return_masks: training (True): per-stage outputs and ``roi_mask_logits`` for
                the criterion; inference (False): masks of every query and frame.
            image_sizes: B (h, w) sizes of the clips before padding (default: the padded
                (H, W)); the initial boxes cover them, and boxes are normalised by them.
        Returns:
            ``pred_logits`` (B, N, T, K) per-frame class logits, ``pred_boxes`` (B, N, T, 4)
            xyxy boxes / (w, h, w, h), ``attn_feats`` (B, N, T, d) and ``image_size``
            (H, W); training: ``aux_outputs`` (the earlier stages, each with its
            ``stage``) and ``roi_mask_logits``: ``fn(stage, frame_idx (R,), boxes (R, 4)
            normalised xyxy, queries (R, d), labels (R,)) -> (R, 2S, 2S)``; inference:
            ``pred_box_masks`` (B, Q, T, 2S, 2S) the box mask logits, ``pred_mask_embeds``
            (B, Q, T, Q) one-hot and ``mask_features`` (B, T, Q, h, w) those masks pasted
            into the stride-4 grid, so that ``embeds . features`` are the masks (Q = N
            queries, or the top-k (query, class) candidates with class-specific masks).
        """
        levels = [mask_features, *reversed(multi_scale)]
        batch, frames = mask_features.shape[:2]
        flat_levels = [level.flatten(0, 1) for level in levels]  # (B*T, d, h, w)
        height, width = mask_features.shape[-2] * 4, mask_features.shape[-1] * 4
        scales = frame_scales(image_sizes or [(height, width)] * batch, frames, mask_features)
        n = self.num_queries
        boxes = box_convert(self.init_proposal_bboxes.weight, "cxcywh", "xyxy")
        boxes = boxes[None] * scales[:, None]  # (B*T, N, 4) input pixels
        queries = self.init_proposal_features.weight[None].expand(batch * frames, n, -1)
        frame_idx = torch.arange(batch * frames, device=boxes.device).repeat_interleave(n)
        stage_outputs = []
        for i, stage in enumerate(self.stages):
            rois = torch.cat([frame_idx[:, None].to(boxes), boxes.reshape(-1, 4)], dim=1)
            roi_features = multilevel_roi_align(flat_levels, rois, self.box_pool, self.strides)
            logits, deltas, queries, attn_feats = stage(roi_features, queries, frames)
            boxes = decode_box_deltas(boxes.reshape(-1, 4), deltas.reshape(-1, 4))
            boxes = boxes.view(batch * frames, n, 4)

            def by_query(x: Tensor) -> Tensor:  # (B*T, N, ...) -> (B, N, T, ...)
                return x.view(batch, frames, n, *x.shape[2:]).transpose(1, 2)

            stage_outputs.append(
                {
                    "pred_logits": by_query(logits),
                    "pred_boxes": by_query(boxes / scales[:, None]),
                    "attn_feats": by_query(attn_feats),
                    "stage": i,
                }
            )
            boxes = boxes.detach()  # the next stage refines the detached boxes, as TeViT
        outputs = dict(stage_outputs[-1], image_size=(height, width))
        if return_masks:
            outputs["aux_outputs"] = stage_outputs[:-1]
            outputs["roi_mask_logits"] = partial(self.roi_mask_logits, flat_levels, scales)
            return outputs
        if not self.class_agnostic_masks:
            outputs = select_class_candidates(outputs, self.top_k)
        box_masks = self._box_masks(flat_levels, scales, outputs)
        boxes = outputs["pred_boxes"] * scales.view(batch, 1, frames, 4)  # input pixels
        pasted = paste_box_masks(box_masks, boxes, tuple(mask_features.shape[-2:]))
        outputs.update(masks_as_embeddings(pasted), pred_box_masks=box_masks)
        return outputs

    def roi_mask_logits(
        self,
        flat_levels: List[Tensor],
        scales: Tensor,
        stage: int,
        frame_idx: Tensor,
        boxes: Tensor,
        queries: Tensor,
        labels: Optional[Tensor] = None,
    ) -> Tensor:
        """Mask logits (R, 2S, 2S) of R boxes (R, 4) (xyxy / the frame's (w, h, w, h) in
        ``scales`` (B*T, 4)) in frames ``frame_idx`` (R,) (of the B*T frames), with stage
        ``stage``'s mask head, query features ``queries`` (R, d) and, for class-specific
        masks, classes ``labels`` (R,)."""
        rois = torch.cat([frame_idx[:, None].to(boxes), boxes * scales[frame_idx]], dim=1)
        roi_features = multilevel_roi_align(flat_levels, rois, self.mask_pool, self.strides)
        return self.mask_heads[stage](queries, roi_features, labels)

    def _box_masks(self, flat_levels, scales, outputs) -> Tensor:
        """(B, Q, T, 2S, 2S) box mask logits of the last stage for the Q queries (or
        (query, class) candidates) of ``outputs``; the mask head runs on
        ``MASK_ROI_CHUNK`` RoIs at a time (bounded memory on long videos)."""
        batch, num, frames = outputs["pred_boxes"].shape[:3]
        boxes = outputs["pred_boxes"].transpose(1, 2).reshape(-1, 4)  # frame-major
        queries = outputs["attn_feats"].transpose(1, 2).reshape(boxes.shape[0], -1)
        labels = outputs.get("candidate_labels")
        if labels is not None:
            labels = labels[:, None].expand(batch, frames, num).reshape(-1)
        frame_idx = torch.arange(batch * frames, device=boxes.device).repeat_interleave(num)
        chunks = []
        for start in range(0, boxes.shape[0], MASK_ROI_CHUNK):
            part = slice(start, start + MASK_ROI_CHUNK)
            chunks.append(
                self.roi_mask_logits(
                    flat_levels,
                    scales,
                    len(self.stages) - 1,
                    frame_idx[part],
                    boxes[part],
                    queries[part],
                    None if labels is None else labels[part],
                )
            )
        masks = torch.cat(chunks)
        return masks.view(batch, frames, num, *masks.shape[-2:]).transpose(1, 2)


def frame_scales(image_sizes: Sequence[Tuple[int, int]], frames: int, like: Tensor) -> Tensor:
    """B (h, w) clip sizes -> (B*T, 4) per-frame (w, h, w, h), on ``like``'s device/dtype."""
    scales = like.new_tensor([[w, h, w, h] for h, w in image_sizes])
    return scales.repeat_interleave(frames, dim=0)


def paste_box_masks(box_masks: Tensor, boxes: Tensor, grid_size: Tuple[int, int]) -> Tensor:
    """(B, Q, T, S, S) box mask logits in (B, Q, T, 4) xyxy input-pixel boxes -> (B, Q, T,
    h, w) logits pasted into the stride-4 grid (``paste_mask_logits``)."""
    flat = paste_mask_logits(box_masks.flatten(0, 2), boxes.flatten(0, 2), grid_size, 4)
    return flat.view(*box_masks.shape[:3], *flat.shape[-2:])


def select_class_candidates(outputs: Dict[str, Tensor], top_k: int) -> Dict[str, Tensor]:
    """The ``top_k`` (query, class) pairs of highest mean sigmoid score over the frames
    (TeViT's test), as ``top_k`` candidates.

    Args:
        outputs: ``pred_logits`` (B, N, T, K), ``pred_boxes`` (B, N, T, 4), ``attn_feats``
            (B, N, T, d) of the last stage.
    Returns:
        the same keys with k = min(top_k, N*K) candidates in place of the N queries: a
        candidate's logits are its query's in its class and ``NOT_THIS_CLASS`` in the
        others; ``candidate_labels`` (B, k) its class, ``candidate_queries`` (B, k) its query.
    """
    logits = outputs["pred_logits"]
    batch, n, frames, num_classes = logits.shape
    scores = logits.sigmoid().mean(dim=2).flatten(1)  # (B, N*K)
    top = scores.topk(min(top_k, scores.shape[1]), dim=1).indices
    query, label = top // num_classes, top % num_classes  # (B, k)

    def gather(x: Tensor) -> Tensor:  # (B, N, T, ...) -> (B, k, T, ...)
        index = query.view(*query.shape, *([1] * (x.dim() - 2)))
        return torch.gather(x, 1, index.expand(-1, -1, *x.shape[2:]))

    own = torch.gather(gather(logits), 3, label[:, :, None, None].expand(-1, -1, frames, 1))
    candidate_logits = torch.full_like(gather(logits), NOT_THIS_CLASS)
    candidate_logits.scatter_(3, label[:, :, None, None].expand(-1, -1, frames, 1), own)
    return dict(
        outputs,
        pred_logits=candidate_logits,
        pred_boxes=gather(outputs["pred_boxes"]),
        attn_feats=gather(outputs["attn_feats"]),
        candidate_labels=label,
        candidate_queries=query,
    )
