"""The set criterion shared by IFR and Mask2Former-VIS: Hungarian matching of the
clip-level queries, point-sampled per-frame BCE + Dice mask losses over the clip, deep
supervision, and the normalisation by the number of ground-truth instances.

Subclasses give the class loss (``loss_classes``) and may add mask terms
(``extra_mask_losses``): ``ifr.modeling.criterion.ifr`` (focal + cross-frame, Eq. 5-7) and
``ifr.modeling.criterion.m2f_vis`` (softmax cross-entropy with a no-object class).
The criterion returns raw loss terms; their weights live in ``weight_dict`` and the
meta-architecture multiplies ``losses[k] * weight_dict[k]``.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from detectron2.projects.point_rend.point_features import (
    get_uncertain_point_coords_with_randomness,
)
from detectron2.utils import comm
from torch import nn
from torch.nn import functional as F

from ...layers.matching_cost import Indices
from ...layers.point_sampling import sample_frame_points
from ..losses import dice_loss, sigmoid_ce_loss
from ..matcher import VideoHungarianMatcher


def aux_weight_dict(weights: Dict[str, float], num_aux: int) -> Dict[str, float]:
    """``weights`` for the final output plus the same keys suffixed ``_0`` ..
    ``_{num_aux-1}`` for the auxiliary outputs (deep supervision)."""
    aux_weights = {f"{k}_{i}": v for i in range(num_aux) for k, v in weights.items()}
    return {**weights, **aux_weights}


def class_mask_dice_weight_dict(vis_cfg, num_aux: int) -> Dict[str, float]:
    """``aux_weight_dict`` of ``loss_ce``, ``loss_mask``, ``loss_dice`` weighted by
    ``MODEL.VIS.CLASS_WEIGHT``, ``MASK_WEIGHT``, ``DICE_WEIGHT`` (``vis_cfg`` is
    ``cfg.MODEL.VIS``)."""
    weights = {
        "loss_ce": vis_cfg.CLASS_WEIGHT,
        "loss_mask": vis_cfg.MASK_WEIGHT,
        "loss_dice": vis_cfg.DICE_WEIGHT,
    }
    return aux_weight_dict(weights, num_aux)


def num_masked_decoder_aux(vis_cfg) -> int:
    """Auxiliary outputs of the Mask2Former-style decoders (IFR, Mask2Former-VIS): the
    initial queries' prediction and every layer's but the last, L in all; 0 without deep
    supervision (``vis_cfg`` is ``cfg.MODEL.VIS``)."""
    return vis_cfg.DEC_LAYERS if vis_cfg.DEEP_SUPERVISION else 0


def point_set_criterion_args(cfg, class_activation: str) -> dict:
    """The ``from_config`` arguments of ``VideoSetCriterion`` shared by its point-sampled
    subclasses (IFR, Mask2Former-VIS), from ``MODEL.VIS.*``, all but ``weight_dict``;
    ``class_activation`` ("sigmoid" or "softmax") is the matcher's."""
    vis = cfg.MODEL.VIS
    return {
        "num_classes": vis.NUM_CLASSES,
        "matcher": VideoHungarianMatcher(cfg, class_activation=class_activation),
        "num_points": vis.TRAIN_NUM_POINTS,
        "oversample_ratio": vis.OVERSAMPLE_RATIO,
        "importance_sample_ratio": vis.IMPORTANCE_SAMPLE_RATIO,
        "deep_supervision": vis.DEEP_SUPERVISION,
    }


def mean_count_across_processes(count: float, device) -> float:
    """A count of this process's batch (e.g. of ground-truth instances), averaged over
    processes, at least 1: the normaliser of the summed losses."""
    counts = torch.as_tensor([count], dtype=torch.float, device=device)
    if comm.get_world_size() > 1:
        dist.all_reduce(counts)
    return torch.clamp(counts / comm.get_world_size(), min=1).item()


def no_object_class_weight(num_classes: int, eos_coef: float, key: str) -> torch.Tensor:
    """(K + 1,) class weights of a softmax cross-entropy with a "no-object" class (the last
    column, DETR's ``empty_weight``): 1 for the K classes, ``eos_coef`` for no-object.
    ``key`` names the config key of ``eos_coef`` in the error when it is not in [0, 1]."""
    if not 0.0 <= eos_coef <= 1.0:
        raise ValueError(f"{key} must be in [0, 1], got {eos_coef}")
    empty_weight = torch.ones(num_classes + 1)
    empty_weight[-1] = eos_coef
    return empty_weight


def no_object_cross_entropy(
    logits: torch.Tensor,
    matched_index: Tuple[torch.Tensor, ...],
    matched_labels: torch.Tensor,
    empty_weight: torch.Tensor,
) -> torch.Tensor:
    """Class-weighted mean softmax cross-entropy of every prediction, the target being the
    no-object class K except at ``matched_index`` where it is ``matched_labels``.

    Args:
        logits: (B, ..., K + 1), e.g. (B, N, K + 1) or (B, n, T, K + 1).
        matched_index: one (P,) int64 index per leading dimension of ``logits``, on its device.
        matched_labels: (P,) int64 classes in [0, K), on the same device.
        empty_weight: (K + 1,) from ``no_object_class_weight``.

    Returns:
        ``sum_q w_{c_q} CE_q / sum_q w_{c_q}`` over all predictions q (scalar, float32).
    """
    num_classes = empty_weight.shape[0] - 1
    target_classes = torch.full(
        logits.shape[:-1], num_classes, dtype=torch.int64, device=logits.device
    )
    target_classes[matched_index] = matched_labels
    return F.cross_entropy(logits.float().movedim(-1, 1), target_classes, empty_weight)


def zero_losses(source: torch.Tensor, keys: Sequence[str]) -> Dict[str, torch.Tensor]:
    """A zero loss for each of ``keys`` when nothing is matched, in the graph of ``source``
    (``source.sum() * 0``), so every input keeps a gradient (DDP finds no unused
    parameter)."""
    zero = source.sum() * 0.0
    return {key: zero if i == 0 else zero.clone() for i, key in enumerate(keys)}


def mask_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Uncertainty of mask logits for importance sampling: ``-|logit|``, highest at 0."""
    return -logits.abs()


class VideoSetCriterion(nn.Module):
    """
    Losses of matched clip-level queries. Returns (unweighted):

    - ``loss_ce``: the subclass's class loss (``loss_classes``);
    - ``loss_mask``, ``loss_dice``: per frame, the predicted mask of the frame against its
      ground truth at ``num_points`` uncertainty-sampled points (PointRend / Mask2Former),
      summed over frames and matched instances;
    - whatever ``extra_mask_losses`` adds.

    Sums are divided by the number of ground-truth instances in the batch, averaged over
    processes. A frame where an instance is absent has an all-zero ground-truth mask and is
    supervised as such (as Mask2Former-VIS). Auxiliary outputs give the same keys with the
    suffix ``_{i}``.
    """

    # Output keys every decoder output must hold for this criterion.
    required_outputs: Sequence[str] = ("pred_logits", "pred_masks")

    def __init__(
        self,
        *,
        num_classes: int,
        matcher: nn.Module,
        weight_dict: Dict[str, float],
        num_points: int,
        oversample_ratio: float,
        importance_sample_ratio: float,
        deep_supervision: bool = True,
        class_loss: Optional[nn.Module] = None,
    ):
        """
        Args:
            num_classes: K.
            matcher: returns per video ``(pred_idx, tgt_idx)`` (``VideoHungarianMatcher``).
            weight_dict: loss weights, with ``_{i}`` keys for auxiliary outputs.
            num_points: points sampled per frame mask.
            oversample_ratio, importance_sample_ratio: of the uncertainty-based point
                sampling (PointRend / Mask2Former).
            deep_supervision: also supervise ``outputs["aux_outputs"]``.
            class_loss: ``loss_classes``, a module of ``ifr.modeling.criterion.class_losses``
                (its ``num_columns(K)`` gives ``num_logit_columns``); None: the subclass
                overrides ``loss_classes``.
        """
        super().__init__()
        self.class_loss = class_loss
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = weight_dict
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.deep_supervision = deep_supervision

    # ------------------------------------------------------------ to override
    @property
    def num_logit_columns(self) -> int:
        """Columns of ``pred_logits``: K, or K + 1 with a no-object class."""
        if self.class_loss is None:
            return self.num_classes
        return self.class_loss.num_columns(self.num_classes)

    def loss_classes(
        self,
        pred_logits: torch.Tensor,
        targets: List[Dict[str, torch.Tensor]],
        indices: Indices,
        num_masks: float,
    ) -> torch.Tensor:
        """Scalar class loss of all queries; pred_logits (B, N, num_logit_columns)."""
        if self.class_loss is None:
            raise NotImplementedError(f"{type(self).__name__} has no class_loss")
        return self.class_loss(pred_logits, targets, indices, num_masks)

    def extra_mask_losses(
        self,
        outputs: Dict[str, torch.Tensor],
        matched: Tuple[torch.Tensor, torch.Tensor],
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        num_masks: float,
    ) -> Dict[str, torch.Tensor]:
        """Further mask terms of the matched queries ``matched = (batch_idx, query_idx)``
        (M,) each, at the points ``point_coords`` (M, T, P, 2) of the per-frame losses,
        whose ground truth is ``point_labels`` (M, T, P). None by default."""
        return {}

    def zero_extra_mask_losses(self, outputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``extra_mask_losses`` when no instance is in the batch (zeros in the graph)."""
        return {}

    # ------------------------------------------------------------ shared
    def forward(
        self, outputs: Dict[str, object], targets: List[Dict[str, torch.Tensor]]
    ) -> Dict[str, torch.Tensor]:
        """
        Args:
            outputs: ``pred_logits (B, N, num_logit_columns)``, ``pred_masks (B, N, T, h, w)``
                logits, the subclass's ``required_outputs`` and, with deep supervision,
                ``aux_outputs``: a list of dicts with the same keys.
            targets: B dicts with ``labels (M,) int64`` and ``masks (M, T, H, W) float``
                (zero where the instance is absent), H = 4h and W = 4w.

        Returns:
            dict of scalar losses, unweighted.
        """
        self._check_outputs(outputs, len(targets), "outputs")
        num_frames = outputs["pred_masks"].shape[2]
        for b, target in enumerate(targets):
            self._check_target(target, b, num_frames)
        num_masks = self._num_masks_across_processes(targets, outputs["pred_logits"].device)
        losses = self._losses_of_output(outputs, targets, num_masks)
        if self.deep_supervision:
            for i, aux_outputs in enumerate(outputs.get("aux_outputs", [])):
                self._check_outputs(aux_outputs, len(targets), f"aux_outputs[{i}]")
                aux_losses = self._losses_of_output(aux_outputs, targets, num_masks)
                losses.update({f"{k}_{i}": v for k, v in aux_losses.items()})
        return losses

    def _losses_of_output(
        self,
        outputs: Dict[str, torch.Tensor],
        targets: List[Dict[str, torch.Tensor]],
        num_masks: float,
    ) -> Dict[str, torch.Tensor]:
        indices = self.matcher(outputs, targets)
        losses = {"loss_ce": self.loss_classes(outputs["pred_logits"], targets, indices, num_masks)}
        losses.update(self.loss_masks(outputs, targets, indices, num_masks))
        return losses

    def loss_masks(
        self,
        outputs: Dict[str, torch.Tensor],
        targets: List[Dict[str, torch.Tensor]],
        indices: Indices,
        num_masks: float,
    ) -> Dict[str, torch.Tensor]:
        """Per-frame BCE and Dice of the matched queries' masks, then ``extra_mask_losses``."""
        pred_masks = outputs["pred_masks"]
        batch_idx, query_idx = matched_query_index(indices, pred_masks.device)
        if len(batch_idx) == 0:
            return {
                **zero_losses(pred_masks, ("loss_mask", "loss_dice")),
                **self.zero_extra_mask_losses(outputs),
            }

        src_masks = pred_masks[batch_idx, query_idx]  # (M, T, h, w)
        tgt_masks = matched_masks(targets, indices).to(src_masks)  # (M, T, H, W)

        point_coords = self._sample_uncertain_points(src_masks)  # (M, T, P, 2)
        point_labels = sample_frame_points(tgt_masks, point_coords)  # (M, T, P)
        point_logits = sample_frame_points(src_masks, point_coords)
        frame_logits, frame_labels = point_logits.flatten(0, 1), point_labels.flatten(0, 1)
        losses = {
            "loss_mask": sigmoid_ce_loss(frame_logits, frame_labels, num_masks),  # Eq. (6), t1
            "loss_dice": dice_loss(frame_logits, frame_labels, num_masks),  # Eq. (7), t1
        }
        losses.update(
            self.extra_mask_losses(
                outputs, (batch_idx, query_idx), point_coords, point_labels, num_masks
            )
        )
        return losses

    def _sample_uncertain_points(self, src_masks: torch.Tensor) -> torch.Tensor:
        """src_masks: (M, T, h, w) logits -> (M, T, P, 2) points, chosen per frame mask."""
        num_instances, num_frames = src_masks.shape[:2]
        with torch.no_grad():
            point_coords = get_uncertain_point_coords_with_randomness(
                src_masks.flatten(0, 1)[:, None],
                mask_uncertainty,
                self.num_points,
                self.oversample_ratio,
                self.importance_sample_ratio,
            )
        return point_coords.view(num_instances, num_frames, self.num_points, 2)

    @staticmethod
    def _num_masks_across_processes(targets: List[Dict[str, torch.Tensor]], device) -> float:
        """Ground-truth instances in the batch, averaged over processes, at least 1."""
        return mean_count_across_processes(float(sum(len(t["labels"]) for t in targets)), device)

    def _check_outputs(self, outputs: Dict[str, torch.Tensor], batch_size: int, where: str) -> None:
        name = type(self).__name__
        missing = [k for k in self.required_outputs if k not in outputs]
        if missing:
            raise KeyError(f"{name}: {where} lacks {missing}")
        num_videos, _, num_columns = outputs["pred_logits"].shape
        if num_columns != self.num_logit_columns:
            raise ValueError(
                f"{name}: {where}['pred_logits'] has {num_columns} columns, expected "
                f"{self.num_logit_columns} for {self.num_classes} classes"
            )
        if num_videos != batch_size:
            raise ValueError(f"{name}: {batch_size} targets for {num_videos} videos in {where}")

    def _check_target(self, target: Dict[str, torch.Tensor], video: int, num_frames: int) -> None:
        name = type(self).__name__
        labels, masks = target["labels"], target["masks"]
        if masks.dim() != 4 or masks.shape[0] != labels.shape[0] or masks.shape[1] != num_frames:
            raise ValueError(
                f"{name}: targets[{video}]['masks'] has shape {tuple(masks.shape)}, "
                f"expected ({labels.shape[0]}, {num_frames}, H, W)"
            )
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"{name}: targets[{video}]['labels'] has classes outside "
                f"[0, {self.num_classes}): {labels.tolist()}"
            )


def matched_query_index(
    indices: Indices, device: Optional[torch.device] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(batch_idx, query_idx) of all matched queries, video by video, as int64 tensors
    (on ``device`` if given)."""
    batch_idx = torch.cat([torch.full_like(src, b) for b, (src, _) in enumerate(indices)])
    query_idx = torch.cat([src for src, _ in indices])
    if device is not None:
        batch_idx, query_idx = batch_idx.to(device), query_idx.to(device)
    return batch_idx, query_idx


def matched_labels(targets: List[Dict[str, torch.Tensor]], indices: Indices) -> torch.Tensor:
    """(M,) class of each matched target, in the order of ``matched_query_index``."""
    return torch.cat([t["labels"][tgt] for t, (_, tgt) in zip(targets, indices)])


def matched_masks(targets: List[Dict[str, torch.Tensor]], indices: Indices) -> torch.Tensor:
    """(M, T, H, W) ground-truth masks of the matched targets, in the order of
    ``matched_query_index``."""
    return torch.cat([t["masks"][tgt] for t, (_, tgt) in zip(targets, indices)])
