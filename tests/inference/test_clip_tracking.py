import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from ifr.inference import run_inference
from ifr.inference.clip_tracking import (
    ClipLinkInput,
    link_clips,
    soft_iou,
    split_into_clips,
    track_class_probs,
)


@pytest.mark.parametrize(
    "num_frames, length, overlap, expected",
    [
        (2, 5, 1, [(0, 2)]),
        (5, 5, 1, [(0, 5)]),
        (9, 5, 1, [(0, 5), (4, 9)]),
        (12, 5, 1, [(0, 5), (4, 9), (7, 12)]),  # last clip aligned to the end
        (5, 2, 0, [(0, 2), (2, 4), (3, 5)]),
        (3, 2, 1, [(0, 2), (1, 3)]),
    ],
)
def test_split_into_clips(num_frames, length, overlap, expected):
    assert split_into_clips(num_frames, length, overlap) == expected


def test_soft_iou_is_iou_on_binary_masks():
    a = torch.zeros(1, 2, 4, 4)
    a[0, :, :2] = 1  # 16 pixels
    b = torch.zeros(1, 2, 4, 4)
    b[0, :, 1:3] = 1  # 16 pixels, 8 shared
    assert torch.allclose(soft_iou(a, b), torch.tensor([[8 / 24]]))


def moving_box(frame: int, obj: int, size=12) -> torch.Tensor:
    """Object ``obj`` is a 3x3 box moving right by one pixel per frame, one row band each."""
    mask = torch.zeros(size, size)
    mask[obj * 4 : obj * 4 + 3, frame : frame + 3] = 1.0
    return mask


def clips_with_permuted_queries(ranges, permutations, num_classes=3):
    """Clip c's query q shows object ``permutations[c][q]``, with class = object id."""
    clips = []
    for (start, end), perm in zip(ranges, permutations):
        probs = torch.full((len(perm), num_classes), 0.1)
        probs[torch.arange(len(perm)), torch.tensor(perm)] = 0.9
        masks = {t: torch.stack([moving_box(t, obj) for obj in perm]) for t in range(start, end)}
        clips.append(ClipLinkInput(start, end, probs, masks))
    return clips


def test_tracks_follow_objects_across_clip_boundaries():
    ranges = split_into_clips(8, 3, 1)  # [(0, 3), (2, 5), (4, 7), (5, 8)]
    permutations = [[0, 1, 2], [2, 0, 1], [1, 2, 0], [0, 2, 1]]
    clips = clips_with_permuted_queries(ranges, permutations)
    tracks = link_clips(clips, 0.1)
    assert len(tracks) == 3
    for track in tracks:
        assert [c for c, _ in track] == [0, 1, 2, 3]  # one member per clip
        objects = {permutations[c][q] for c, q in track}
        assert len(objects) == 1, f"track {track} switched objects {objects}"


def test_query_without_overlap_starts_a_new_track():
    clips = clips_with_permuted_queries([(0, 3), (2, 5)], [[0, 1], [1, 0]])
    clips[1].mask_probs[2][1] = 0.0  # query 1 of clip 1 (object 0) vanishes on the shared frame
    tracks = link_clips(clips, 0.1)
    assert [(0, 0)] in tracks and [(1, 1)] in tracks
    assert [(0, 1), (1, 0)] in tracks


def test_class_breaks_ties_between_identical_masks():
    mask = moving_box(0, 0)
    probs = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    previous = ClipLinkInput(0, 2, probs, {1: torch.stack([mask, mask])})
    current = ClipLinkInput(1, 3, probs.flip(0), {1: torch.stack([mask, mask])})
    tracks = link_clips([previous, current], 0.1)
    assert sorted(tracks) == [[(0, 0), (1, 1)], [(0, 1), (1, 0)]]


def test_track_class_probs_weighted_by_clip_frames():
    clips = [
        ClipLinkInput(0, 4, torch.tensor([[1.0, 0.0]]), {}),
        ClipLinkInput(3, 5, torch.tensor([[0.4, 0.6]]), {}),
    ]
    probs = track_class_probs([[(0, 0), (1, 0)]], clips)
    assert torch.allclose(probs, torch.tensor([[(4 * 1.0 + 2 * 0.4) / 6, (2 * 0.6) / 6]]))


def decoded(output):
    return [np.stack([mask_util.decode(r) for r in rles]) for rles in output["pred_masks"]]


def test_one_clip_covering_the_video_equals_whole_video(toy_model, make_video):
    video = make_video(4)
    per_clip = run_inference(toy_model(mode="clip", clip_length=5, clip_overlap=1, top_k=5), video)
    whole = run_inference(toy_model(mode="video", top_k=5), video)
    assert np.allclose(per_clip["pred_scores"], whole["pred_scores"], atol=1e-6)
    assert per_clip["pred_labels"] == whole["pred_labels"]
    for a, b in zip(decoded(per_clip), decoded(whole)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("num_frames, clip_length", [(2, 2), (5, 2), (5, 5), (7, 3)])
def test_per_clip_inference_covers_every_frame(toy_model, make_video, num_frames, clip_length):
    model = toy_model(mode="clip", clip_length=clip_length, clip_overlap=1, top_k=3)
    output = run_inference(model, make_video(num_frames))
    assert len(output["pred_masks"]) == 3
    for masks in decoded(output):
        assert masks.shape == (num_frames, 60, 84)
