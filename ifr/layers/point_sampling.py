"""Point sampling of mask volumes (Mask2Former's point-sampled mask losses and costs)."""

import torch
from detectron2.projects.point_rend.point_features import point_sample


def sample_clip_points(masks: torch.Tensor, point_coords: torch.Tensor) -> torch.Tensor:
    """
    Sample every frame of a mask volume at the same points.

    Args:
        masks: (R, T, h, w) mask logits or probabilities.
        point_coords: (1, P, 2) normalised (x, y) coordinates in [0, 1], the same for all
            R volumes, or (R, P, 2), the points of each volume.

    Returns:
        (R, T * P): frame-major, the P points of frame 0 first.
    """
    coords = point_coords.expand(masks.shape[0], -1, -1)
    return point_sample(masks, coords, align_corners=False).flatten(1)


def sample_frame_points(masks: torch.Tensor, point_coords: torch.Tensor) -> torch.Tensor:
    """
    Sample each frame of each mask volume at its own points.

    Args:
        masks: (M, T, H, W) mask logits or probabilities.
        point_coords: (M, T, P, 2) normalised (x, y) points of mask m in frame t.

    Returns:
        (M, T, P): ``masks[m, t]`` at ``point_coords[m, t]``.
    """
    num_masks, num_frames, num_points = point_coords.shape[:3]
    samples = point_sample(
        masks.flatten(0, 1)[:, None], point_coords.flatten(0, 1), align_corners=False
    )
    return samples.view(num_masks, num_frames, num_points)
