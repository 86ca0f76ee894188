"""Hungarian matching of clip-level queries to ground-truth instances, Eq. (4)."""

from typing import Dict, List, Tuple

import torch
from detectron2.config import configurable
from torch import nn

from ...config import FOCAL_ALPHA, FOCAL_GAMMA
from ...layers.classification import CLASS_ACTIVATIONS, class_probabilities
from ...layers.matching_cost import (
    CLASS_COSTS,
    clip_matching_cost,
    empty_match,
    hungarian_match,
)
from ...layers.point_sampling import sample_clip_points


class VideoHungarianMatcher(nn.Module):
    """
    One-to-one assignment of the N clip-level queries of each video to its M instances by
    the Eq. (4) cost on ``num_points`` random points, the same points in every frame.
    The class term is minus the probability of the target's class: sigmoid for IFR,
    softmax over K + 1 columns for Mask2Former-VIS (``class_activation``); or, with
    ``class_cost="focal"`` (sigmoid only), the focal cost of Deformable DETR.
    """

    @configurable
    def __init__(
        self,
        *,
        cost_class: float,
        cost_mask: float,
        cost_dice: float,
        num_points: int,
        class_activation: str = "sigmoid",
        class_cost: str = "probability",
        focal_alpha: float = FOCAL_ALPHA,
        focal_gamma: float = FOCAL_GAMMA,
    ):
        """
        Args:
            cost_class, cost_mask, cost_dice: lambda_c, lambda_m, lambda_d of Eq. (4).
            num_points: points sampled per frame for the mask costs.
            class_activation: "sigmoid" or "softmax" (``ifr.layers.class_probabilities``).
            class_cost: "probability" (-lambda_c p, Eq. 4) or "focal"
                (``ifr.layers.matching_cost.focal_class_cost`` with ``focal_alpha``,
                ``focal_gamma``; sigmoid only).
        """
        super().__init__()
        if num_points <= 0:
            raise ValueError(
                f"VideoHungarianMatcher: num_points must be positive, got {num_points}"
            )
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points
        if class_activation not in CLASS_ACTIVATIONS:
            raise ValueError(
                f"VideoHungarianMatcher: class_activation must be one of {CLASS_ACTIVATIONS}, "
                f"got {class_activation!r}"
            )
        self.class_activation = class_activation
        if class_cost not in CLASS_COSTS:
            raise ValueError(
                f"MODEL.VIS.CLASS_COST must be one of {CLASS_COSTS}, got {class_cost!r}"
            )
        if class_cost == "focal" and class_activation != "sigmoid":
            raise ValueError(
                "MODEL.VIS.CLASS_COST 'focal' needs sigmoid class scores (the focal class "
                f"loss); this matcher has {class_activation} scores"
            )
        self.class_cost = class_cost
        self.focal = (focal_alpha, focal_gamma) if class_cost == "focal" else None

    @classmethod
    def from_config(cls, cfg, class_activation: str = "sigmoid") -> dict:
        return {
            "class_activation": class_activation,
            "cost_class": cfg.MODEL.VIS.CLASS_WEIGHT,
            "cost_mask": cfg.MODEL.VIS.MASK_WEIGHT,
            "cost_dice": cfg.MODEL.VIS.DICE_WEIGHT,
            "num_points": cfg.MODEL.VIS.TRAIN_NUM_POINTS,
            "class_cost": cfg.MODEL.VIS.CLASS_COST,
            "focal_alpha": cfg.MODEL.VIS.FOCAL_ALPHA,
            "focal_gamma": cfg.MODEL.VIS.FOCAL_GAMMA,
        }

    @torch.no_grad()
    def forward(
        self, outputs: Dict[str, torch.Tensor], targets: List[Dict[str, torch.Tensor]]
    ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """
        Args:
            outputs: ``pred_logits (B, N, K)`` class logits (K + 1 columns with softmax)
                and ``pred_masks (B, N, T, h, w)`` mask logits.
            targets: B dicts with ``labels (M,) int64`` and ``masks (M, T, H, W) float``.

        Returns:
            B pairs ``(pred_idx, tgt_idx)`` of int64 tensors of length min(N, M) on the CPU:
            query ``pred_idx[j]`` is assigned to instance ``tgt_idx[j]``.
        """
        pred_logits, pred_masks = outputs["pred_logits"], outputs["pred_masks"]
        if len(targets) != pred_logits.shape[0]:
            raise ValueError(
                f"VideoHungarianMatcher: {len(targets)} targets for a batch of "
                f"{pred_logits.shape[0]} videos"
            )
        videos = [b for b, target in enumerate(targets) if target["masks"].shape[0] > 0]
        for b in videos:
            self._check_frames(targets[b]["masks"], pred_masks.shape[2], b)
        indices = [empty_match() for _ in targets]
        if not videos:
            return indices
        costs = self._costs(pred_logits[videos], pred_masks[videos], [targets[b] for b in videos])
        if not all(torch.isfinite(cost).all() for cost in costs):
            video = next(b for b, cost in zip(videos, costs) if not torch.isfinite(cost).all())
            raise FloatingPointError(
                f"VideoHungarianMatcher: non-finite matching cost for video {video} "
                "(NaN or inf in pred_logits or pred_masks)"
            )
        for b, cost in zip(videos, costs):
            indices[b] = hungarian_match(cost)
        return indices

    def _costs(
        self, logits: torch.Tensor, masks: torch.Tensor, targets: List[Dict[str, torch.Tensor]]
    ) -> List[torch.Tensor]:
        """Eq. (4) cost matrices (N, M_v), on the CPU, of V videos with instances.

        logits: (V, N, K) or (V, N, K + 1); masks: (V, N, T, h, w) logits. Each video has
        its own ``num_points`` random points, drawn video after video; the predictions of
        all videos are sampled at once, the costs computed video by video.
        """
        num_videos, num_queries = masks.shape[:2]
        point_coords = torch.cat(
            [torch.rand(1, self.num_points, 2, device=masks.device) for _ in range(num_videos)]
        )  # (V, P, 2)
        pred_points = sample_clip_points(
            masks.flatten(0, 1), point_coords.repeat_interleave(num_queries, dim=0)
        ).unflatten(0, (num_videos, num_queries))  # (V, N, T * P)
        probs = class_probabilities(logits, self.class_activation)
        costs = []
        for v, target in enumerate(targets):
            tgt_points = sample_clip_points(target["masks"].to(masks), point_coords[v : v + 1])
            costs.append(
                clip_matching_cost(
                    probs[v],
                    pred_points[v],
                    target["labels"],
                    tgt_points,
                    cost_class=self.cost_class,
                    cost_mask=self.cost_mask,
                    cost_dice=self.cost_dice,
                    focal=self.focal,
                )
            )
        num_instances = [cost.shape[1] for cost in costs]
        return torch.cat(costs, dim=1).cpu().split(num_instances, dim=1)  # one device copy

    @staticmethod
    def _check_frames(tgt_masks: torch.Tensor, num_frames: int, video: int) -> None:
        if tgt_masks.shape[1] != num_frames:
            raise ValueError(
                f"VideoHungarianMatcher: video {video} has target masks of {tgt_masks.shape[1]} "
                f"frames for predictions of {num_frames} frames"
            )

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, "
            f"cost_dice={self.cost_dice}, num_points={self.num_points}, "
            f"class_activation={self.class_activation}, class_cost={self.class_cost}"
        )
