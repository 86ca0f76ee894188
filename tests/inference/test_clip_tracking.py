import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from ifr.inference import run_inference
from ifr.inference.candidates import SegmentPrediction
from ifr.inference.clip_tracking import (
    ClassProbMeans,
    ClipLinkInput,
    ClipTracker,
    OpenClip,
    RenderedFrames,
    TrackLogitFrames,
    kept_queries,
    link_size_of,
    members_at,
    soft_iou,
    split_into_clips,
)
from ifr.inference.feature_window import FeatureWindow
from ifr.inference.postprocess import select_topk_probs
from ifr.inference.video import decode_segment, encode_frames_of


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


def box(x: int, row: int = 0, size: int = 16) -> torch.Tensor:
    """A 3x3 box at column ``x`` (clipped at the border) in row band ``row``."""
    mask = torch.zeros(size, size)
    if -3 < x < size:
        mask[row * 4 : row * 4 + 3, max(0, x) : x + 3] = 1.0
    return mask


def make_clip(start, end, shows, where, classes=None, background=()):
    """Clip [start, end) whose query q shows object ``shows[q]`` (mask ``where(obj, t)``);
    queries in ``background`` are not predicted as objects, so the clip drops them."""
    kept = [q for q in range(len(shows)) if q not in background]
    classes = classes or {}
    probs = torch.full((len(kept), 3), 0.05)
    for row, q in enumerate(kept):
        probs[row, classes.get(shows[q], shows[q] % 3)] = 0.9
    masks = (
        torch.stack([torch.stack([where(shows[q], t) for t in range(start, end)]) for q in kept])
        if kept
        else torch.zeros(0, end - start, 16, 16)
    )
    return ClipLinkInput(start, end, kept, probs, masks)


def run_tracker(clips, min_iou=0.05):
    """Tracks as lists of (clip index, query index)."""
    tracker = ClipTracker(min_iou)
    tracks = []
    for clip_idx, clip in enumerate(clips):
        for query, track in zip(clip.queries, tracker.add(clip)):
            tracks.extend([] for _ in range(track + 1 - len(tracks)))
            tracks[track].append((clip_idx, query))
    return tracks


def objects_of(tracks, shows_per_clip):
    return [{shows_per_clip[c][q] for c, q in track} for track in tracks]


def test_tracks_follow_objects_whatever_the_query_order():
    ranges = split_into_clips(8, 3, 2)  # stride 1
    shows = [[(c + q) % 3 for q in range(3)] for c in range(len(ranges))]
    clips = [make_clip(s, e, sh, lambda obj, t: box(t, obj)) for (s, e), sh in zip(ranges, shows)]
    tracks = run_tracker(clips)
    assert len(tracks) == 3
    assert all(len(objects) == 1 for objects in objects_of(tracks, shows))
    assert all([c for c, _ in track] == list(range(len(ranges))) for track in tracks)


def test_two_same_class_objects_crossing_keep_their_identities():
    """A moves right, B moves left in the same row; they overlap fully at t = 3. Both are
    class 0, so only the masks on the shared frames can tell them apart."""
    where = lambda obj, t: box(2 * t if obj == 0 else 12 - 2 * t)  # noqa: E731
    ranges = split_into_clips(7, 3, 2)
    shows = [[c % 2, 1 - c % 2] for c in range(len(ranges))]  # queries swap every clip
    clips = [make_clip(s, e, sh, where, classes={0: 0, 1: 0}) for (s, e), sh in zip(ranges, shows)]
    assert torch.equal(where(0, 3), where(1, 3))  # the crossing frame
    tracks = run_tracker(clips)
    assert len(tracks) == 2
    assert all(len(objects) == 1 for objects in objects_of(tracks, shows))


def test_a_query_background_in_one_clip_keeps_its_track():
    """Object 1's query is background in clip 2; clip 3 still overlaps clip 1 (stride 1,
    T = 3), so object 1 continues its track with a gap in clip 2."""
    ranges = split_into_clips(7, 3, 2)  # (0,3) (1,4) (2,5) (3,6) (4,7)
    shows = [[0, 1]] * len(ranges)
    clips = [
        make_clip(s, e, sh, lambda obj, t: box(t, obj), background={1} if c == 2 else ())
        for c, ((s, e), sh) in enumerate(zip(ranges, shows))
    ]
    tracks = run_tracker(clips)
    assert len(tracks) == 2
    object1 = next(t for t in tracks if (0, 1) in t)
    assert [c for c, _ in object1] == [0, 1, 3, 4]


def test_an_object_leaving_and_reentering():
    """Object 1 is absent at frame 3 only: the clips around the gap share its other
    frames, so the track continues. Absent for frames 3-6 (longer than a clip): no clip
    shares a frame showing it, so its return starts a new track, as IFC."""

    def where_gap(gap):
        return lambda obj, t: box(t, obj) if obj == 0 or t not in gap else box(-10, obj)

    ranges = split_into_clips(11, 3, 2)
    shows = [[0, 1]] * len(ranges)

    def clips_for(gap):
        return [
            make_clip(s, e, sh, where_gap(gap), background={1} if set(range(s, e)) <= gap else ())
            for (s, e), sh in zip(ranges, shows)
        ]

    short = run_tracker(clips_for({3}))
    assert len(short) == 2 and all(len(o) == 1 for o in objects_of(short, shows))
    long = run_tracker(clips_for({3, 4, 5, 6}))
    assert len(long) == 3
    object1 = [t for t in long if 1 in {shows[c][q] for c, q in t}]
    assert len(object1) == 2
    before, after = sorted(object1)
    assert max(c for c, _ in before) < min(c for c, _ in after)


def test_a_pair_at_or_below_the_threshold_is_not_linked():
    first = make_clip(0, 2, [0], lambda obj, t: box(0))
    second = make_clip(1, 3, [0], lambda obj, t: box(0) if t < 2 else box(0))
    iou = soft_iou(first.mask_probs[:, 1:], second.mask_probs[:, :1])[0, 0].item()
    assert run_tracker([first, second], min_iou=iou) == [[(0, 0)], [(1, 0)]]
    assert run_tracker([first, second], min_iou=iou - 1e-3) == [[(0, 0), (1, 0)]]


def test_link_score_averages_the_overlapping_stored_clips():
    """Track 0 is in two stored clips; the new clip's query overlaps one perfectly (IoU
    1) and the other not at all (IoU 0): the score is their mean, 0.5."""
    a = make_clip(0, 3, [0], lambda obj, t: box(0))
    b = make_clip(1, 4, [0], lambda obj, t: box(0) if t < 3 else box(8))
    tracker = ClipTracker(0.05)
    tracker.add(a)
    tracker.add(b)
    new = make_clip(2, 5, [0], lambda obj, t: box(0) if t < 3 else box(12))
    # with a: frame 2 only (box(0) vs box(0)): IoU 1; with b: frames 2-3: (9 / 9 + 0)
    # over unions (9 + 18) -> 9 / 27.
    assert torch.allclose(tracker.link_scores(new), torch.tensor([[(1.0 + 9 / 27) / 2]]))


def test_kept_queries_are_those_predicted_as_objects():
    probs = torch.tensor([[0.6, 0.1], [0.2, 0.3], [0.1, 0.5]])
    assert kept_queries(probs, 0.5) == [0, 2]
    assert kept_queries(probs, 0.0) == [0, 1, 2]


def decoded(output):
    return [np.stack([mask_util.decode(r) for r in rles]) for rles in output["pred_masks"]]


def test_one_clip_covering_the_video_equals_whole_video(toy_model, make_video):
    video = make_video(4)
    per_clip = run_inference(
        toy_model(mode="clip", clip_length=5, clip_overlap=1, clip_min_score=0.0, top_k=5), video
    )
    whole = run_inference(toy_model(mode="video", top_k=5), video)
    assert np.allclose(per_clip["pred_scores"], whole["pred_scores"], atol=1e-6)
    assert per_clip["pred_labels"] == whole["pred_labels"]
    for a, b in zip(decoded(per_clip), decoded(whole)):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("num_frames, clip_length", [(2, 2), (5, 2), (5, 5), (7, 3)])
def test_per_clip_inference_covers_every_frame(toy_model, make_video, num_frames, clip_length):
    model = toy_model(
        mode="clip",
        clip_length=clip_length,
        clip_overlap=clip_length - 1,
        clip_min_score=0.0,
        top_k=3,
    )
    output = run_inference(model, make_video(num_frames))
    assert len(output["pred_masks"]) == 3
    for masks in decoded(output):
        assert masks.shape == (num_frames, 60, 84)


def dense_clip_inference(model, frames, output_size):
    """Clip tracking without streaming, as it was computed before: every frame encoded at
    once, every clip decoded and kept; a track's mask is the sigmoid of its clips' mean
    upsampled mask logits (> threshold), its class probabilities their mean.
    Returns (class_probs (tracks, K), masks (tracks, T, H0, W0) bool)."""
    options = model.inference_options
    multi_scale, mask_features, sizes = encode_frames_of(model, frames)
    tracker = ClipTracker(options.clip_min_iou)
    rows_of, total, count = {}, {}, {}
    shape = (len(frames), *output_size)
    for start, end in split_into_clips(len(frames), options.clip_length, options.clip_overlap):
        segment = decode_segment(model, multi_scale, mask_features, sizes, start, end)
        queries = kept_queries(segment.class_probs, options.clip_min_score)
        logits = segment.mask_logits(torch.tensor(queries, dtype=torch.long), start, end)
        probs = segment.logits_to_probs(logits, link_size_of(segment))
        clip = ClipLinkInput(start, end, queries, segment.class_probs[queries], probs)
        for row, track in enumerate(tracker.add(clip)):
            rows_of.setdefault(track, []).append(clip.class_probs[row])
            total.setdefault(track, torch.zeros(shape))[start:end] += segment.upsample_logits(
                logits[row : row + 1], output_size
            )[0]
            count.setdefault(track, torch.zeros(len(frames)))[start:end] += 1
    tracks = range(len(rows_of))
    class_probs = torch.stack([torch.stack(rows_of[t]).mean(0) for t in tracks])
    masks = [
        (total[t] / count[t].clamp(min=1)[:, None, None]).sigmoid() > options.mask_threshold
        for t in tracks
    ]
    return class_probs, torch.stack(
        [m & (count[t] > 0)[:, None, None] for t, m in zip(tracks, masks)]
    )


@pytest.mark.parametrize(
    "num_frames, length, overlap, chunk",
    [(9, 3, 2, 4), (12, 5, 4, 16), (12, 5, 1, 3), (7, 2, 0, 1), (4, 5, 1, 2)],
)
def test_streamed_clips_equal_the_dense_computation(
    toy_model, make_video, num_frames, length, overlap, chunk
):
    """Streaming (features of a few frames, finished frames as RLEs) changes no mask bit.
    Class probabilities: a running sum over a track's n clips instead of torch's mean;
    each is within n * 2^-24 of the exact mean of n values in [0, 1] (float32 summation
    bound), so they differ by at most n * 2^-23."""
    model = toy_model(
        mode="clip",
        clip_length=length,
        clip_overlap=overlap,
        frame_chunk=chunk,
        clip_min_score=0.0,
        top_k=6,
    )
    video = make_video(num_frames, seed=num_frames)
    output = run_inference(model, video)
    with torch.no_grad():
        class_probs, masks = dense_clip_inference(model, video["image"], (60, 84))
    scores, labels, tracks = select_topk_probs(class_probs, 6)
    num_clips = len(split_into_clips(num_frames, length, overlap))
    assert np.abs(np.array(output["pred_scores"]) - scores.numpy()).max() <= num_clips * 2**-23
    assert output["pred_labels"] == labels.tolist()
    for predicted, track in zip(decoded(output), tracks):
        assert np.array_equal(predicted.astype(bool), masks[track].numpy())
    assert any(m.any() for m in decoded(output))  # not a comparison of empty masks


def constant_clip(logit, start, end, size=(4, 4)):
    """Clip [start, end) of one query whose mask logit is ``logit`` everywhere."""
    features = torch.ones(end - start, 1, *size)
    embeds = torch.full((1, end - start, 1), float(logit))
    return SegmentPrediction(
        torch.ones(1, 1),
        embeds,
        features,
        padded_size=(16, 16),
        image_size=(16, 16),
        frame_offset=start,
    )


def test_a_finished_frame_is_the_sigmoid_of_the_mean_logit_of_its_clips():
    """Track 0 in clips [0, 2) (logit 3) and [1, 3) (logit -5): frame 1's mean logit is -1,
    so its mask is empty at threshold 0.5 and full at 0.2 (sigmoid(-1) = 0.27)."""
    first, second = constant_clip(3.0, 0, 2), constant_clip(-5.0, 1, 3)
    clips = [
        OpenClip(s, s.mask_logits(torch.tensor([0]), s.frame_offset, s.frame_end), [0])
        for s in (first, second)
    ]
    for threshold, frame1 in ((0.5, 0), (0.2, 1)):
        finished = RenderedFrames((8, 8), threshold)
        for frame in range(3):
            finished.add(frame, members_at(clips, frame))
        rles = finished.candidates(torch.ones(1, 1), 4, first).render_rles(
            [0], (8, 8), 1, threshold
        )
        areas = [int(mask_util.area(r)) for r in rles[0]]
        assert areas == [64, 64 * frame1, 0, 0]  # frame 3: no clip covers it


def test_rendered_masks_refuse_another_size():
    finished = RenderedFrames((8, 8), 0.5)
    candidates = finished.candidates(torch.ones(1, 1), 2, constant_clip(1.0, 0, 2))
    with pytest.raises(ValueError, match="rendered at size"):
        candidates.render_rles([0], (4, 4), 1, 0.5)


def test_streaming_holds_a_clip_and_a_chunk_of_frames(toy_model, make_video, monkeypatch):
    """40 frames, clips of 5, chunks of 4: every frame encoded once, in encode_video's
    chunks, and the window never holds more than 5 + 4 frames."""
    held = []
    features = FeatureWindow.features

    def spy(window, start, end):
        result = features(window, start, end)
        held.append(window.held_frames)
        return result

    monkeypatch.setattr(FeatureWindow, "features", spy)
    model = toy_model(mode="clip", clip_length=5, clip_overlap=4, frame_chunk=4, top_k=3)
    run_inference(model, make_video(40, height=8, width=8))
    assert model.encode_calls == [4] * 10
    assert len(held) == 36 and max(held) <= 5 + 4


def test_class_probs_of_a_track_are_the_mean_over_its_clips():
    means = ClassProbMeans()
    means.add([0, 1], torch.tensor([[1.0, 0.0], [0.2, 0.2]]))
    means.add([0], torch.tensor([[0.4, 0.6]]))
    assert torch.allclose(means.means(2), torch.tensor([[0.7, 0.3], [0.2, 0.2]]))
    assert ClassProbMeans().means(3).shape == (0, 3)


def test_under_tta_a_track_keeps_its_mean_logits_where_it_has_clips():
    """The same two clips as above, kept for TTA: frame 1 holds the mean logit -1, frame 3
    (no clip) has probability 0; with no track, one empty TrackLogits keeps the sizes."""
    first, second = constant_clip(3.0, 0, 2), constant_clip(-5.0, 1, 3)
    clips = [
        OpenClip(s, s.mask_logits(torch.tensor([0]), s.frame_offset, s.frame_end), [0])
        for s in (first, second)
    ]
    finished = TrackLogitFrames()
    for frame in range(3):
        finished.add(frame, members_at(clips, frame))
    candidates = finished.candidates(torch.ones(1, 1), 4, first)
    probs = candidates.mask_probs([0], 0, 4, (8, 8)).mean(dim=(2, 3))[0]
    expected = torch.sigmoid(torch.tensor([3.0, -1.0, -5.0])).tolist() + [0.0]
    assert torch.allclose(probs, torch.tensor(expected))
    empty = TrackLogitFrames().candidates(torch.zeros(0, 1), 4, first)
    assert empty.members == [] and empty.segments[0].mask_size == (4, 4)
