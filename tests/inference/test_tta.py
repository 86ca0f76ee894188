import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from ifr.inference import run_inference
from ifr.inference.candidates import SegmentPrediction, VideoCandidates
from ifr.inference.tta import (
    augmentations,
    default_cost_fn,
    frames_at_size,
    fuse_to_pivot,
    match_to_pivot,
    resize_frames,
)


def decoded(output):
    return [np.stack([mask_util.decode(r) for r in rles]) for rles in output["pred_masks"]]


def test_resize_frames_keeps_aspect_caps_the_long_side_and_skips_same_size():
    frames = [torch.randint(0, 256, (3, 40, 60), dtype=torch.uint8)]
    assert resize_frames(frames, 40, 1333)[0] is frames[0]
    resized = resize_frames(frames, 20, 1333)[0]
    assert resized.shape == (3, 20, 30) and resized.dtype == torch.uint8
    assert resize_frames(frames, 20, 24)[0].shape == (3, 16, 24)  # longer side capped


def _checkerboard(height, width, offset=0):
    """uint8 (H, W, 3): 1-pixel checkerboard (0/255) in channel 0, a ramp in channel 2; a
    detail that resizing a smaller copy cannot restore."""
    yy, xx = np.mgrid[:height, :width]
    frame = np.zeros((height, width, 3), np.uint8)
    frame[..., 0] = ((yy + xx + offset) % 2) * 255
    frame[..., 2] = (xx * 255 // max(1, width - 1)).astype(np.uint8)
    return frame


def _shrunk_input(originals, **extra):
    """A test-mapper-like input whose ``image`` frames were shrunk to a third."""
    small = [torch.as_tensor(f[::3, ::3].transpose(2, 0, 1).copy()) for f in originals]
    height, width = originals[0].shape[:2]
    return {"image": small, "height": height, "width": width, "video_id": 3, **extra}


def test_tta_frames_come_from_the_original_frames_in_memory():
    originals = [_checkerboard(30, 42, t) for t in range(2)]
    frames = frames_at_size(_shrunk_input(originals, original_frames=originals), 30, 1333, "RGB")
    for frame, original in zip(frames, originals):  # same size: the originals, unchanged
        assert np.array_equal(frame.numpy().transpose(1, 2, 0), original)
    assert frames_at_size(_shrunk_input(originals, original_frames=originals), 15, 1333, "RGB")[
        0
    ].shape == (3, 15, 21)


def test_tta_frames_are_read_again_from_the_files(tmp_path):
    from PIL import Image

    originals = [_checkerboard(30, 42, t) for t in range(2)]
    paths = []
    for t, frame in enumerate(originals):
        paths.append(str(tmp_path / f"{t}.png"))
        Image.fromarray(frame).save(paths[-1])  # lossless
    rgb = frames_at_size(_shrunk_input(originals, file_names=paths), 30, 1333, "RGB")
    bgr = frames_at_size(_shrunk_input(originals, file_names=paths), 30, 1333, "BGR")
    for frame_rgb, frame_bgr, original in zip(rgb, bgr, originals):
        assert np.array_equal(frame_rgb.numpy().transpose(1, 2, 0), original)
        assert np.array_equal(frame_bgr.numpy().transpose(1, 2, 0), original[..., ::-1])


def test_tta_frames_without_originals_are_resized_with_a_warning(caplog):
    originals = [_checkerboard(30, 42)]
    video = _shrunk_input(originals)  # frames 10 x 14
    with caplog.at_level("WARNING"):
        frames = frames_at_size(video, 30, 1333, "RGB")
    assert frames[0].shape == (3, 30, 42)
    assert "upsamples" in caplog.text and "3" in caplog.text
    # The checkerboard is lost: upsampled frames are not the originals.
    assert not np.array_equal(frames[0].numpy().transpose(1, 2, 0), originals[0])


def test_every_tta_run_sees_frames_resized_from_the_originals(toy_model):
    originals = [_checkerboard(60, 84, t) for t in range(3)]
    model = toy_model(top_k=2, tta_enabled=True, tta_min_sizes=[60, 30], tta_pivot=1)
    seen = []
    preprocess = model.preprocess_frames
    model.preprocess_frames = lambda frames: (
        seen.append(tuple(frames[0].shape)) or preprocess(frames)
    )
    output = run_inference(model, _shrunk_input(originals, original_frames=originals))
    assert set(seen) == {(3, 60, 84), (3, 30, 42)}  # not the 20 x 28 mapper frames
    assert all(m.shape == (3, 60, 84) for m in decoded(output))


def test_augmentations_put_the_pivot_first():
    assert augmentations([360, 480, 600], flip=False, pivot=1) == [
        (480, False),
        (360, False),
        (600, False),
    ]
    assert augmentations([360, 480], flip=True, pivot=0) == [
        (360, False),
        (480, False),
        (360, True),
        (480, True),
    ]


def test_matching_recovers_a_known_permutation():
    torch.manual_seed(0)
    num_queries, num_frames = 5, 3
    pivot_masks = (torch.rand(num_queries, num_frames, 6, 6) > 0.5).float() * 0.9 + 0.05
    pivot_probs = torch.softmax(torch.randn(num_queries, 4) * 3, dim=1)
    permutation = torch.tensor([3, 0, 4, 1, 2])  # other query i shows pivot query permutation[i]
    other_masks = pivot_masks[permutation]
    other_probs = pivot_probs[permutation]
    match = match_to_pivot(pivot_probs, pivot_masks, other_probs, other_masks, default_cost_fn())
    for other_idx, pivot_idx in enumerate(permutation.tolist()):
        assert match[pivot_idx] == other_idx


def test_fusion_averages_matched_class_probabilities():
    def segment(num_queries):
        return SegmentPrediction(
            torch.zeros(num_queries, 2),
            torch.zeros(num_queries, 1, 1),
            torch.zeros(1, 1, 2, 2),
            padded_size=(8, 8),
            image_size=(8, 8),
        )

    pivot = VideoCandidates(
        torch.tensor([[0.8, 0.2], [0.1, 0.5]]), [[(0, 0)], [(0, 1)]], [segment(2)], 1
    )
    other = VideoCandidates(
        torch.tensor([[0.3, 0.7], [0.4, 0.0]]), [[(0, 0)], [(0, 1)]], [segment(2)], 1
    )
    fused = fuse_to_pivot(pivot, [other], [{0: 1, 1: 0}])
    assert torch.allclose(fused.class_probs, torch.tensor([[0.6, 0.1], [0.2, 0.6]]))
    assert fused.members == [[(0, 0), (1, 1)], [(0, 1), (1, 0)]]


@pytest.mark.parametrize("mode", ["video", "clip"])
def test_identical_runs_reproduce_the_single_pass(toy_model, make_video, mode):
    video = make_video(3)  # frames 40 x 56: shorter side 40
    clips = dict(clip_length=2, clip_overlap=1, clip_min_score=0.0)
    single = run_inference(toy_model(mode=mode, top_k=4, **clips), video)
    tta = run_inference(
        toy_model(mode=mode, top_k=4, tta_enabled=True, tta_min_sizes=[40, 40, 40], **clips),
        video,
    )
    assert np.allclose(tta["pred_scores"], single["pred_scores"], atol=1e-5)
    assert tta["pred_labels"] == single["pred_labels"]
    for a, b in zip(decoded(tta), decoded(single)):
        assert (a != b).mean() < 1e-3  # float rounding at the threshold only


@pytest.mark.parametrize("mode", ["video", "clip"])
def test_rescaled_and_flipped_runs_give_masks_at_the_original_size(toy_model, make_video, mode):
    video = make_video(3)
    model = toy_model(
        mode=mode,
        clip_length=2,
        clip_overlap=1,
        clip_min_score=0.0,
        top_k=3,
        tta_enabled=True,
        tta_min_sizes=[40, 24, 64],
        tta_flip=True,
    )
    output = run_inference(model, video)
    assert model.encode_calls  # every run went through the model
    assert len(output["pred_masks"]) == 3
    for masks in decoded(output):
        assert masks.shape == (3, 60, 84)
