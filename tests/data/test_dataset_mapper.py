"""Tests of ifr/data/dataset_mapper.py on a hand-made video whose pixels and masks are
known, so that resizing and flipping can be checked exactly."""

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import transforms as T
from detectron2.structures import BitMasks, Boxes, BoxMode, Instances
from ytvis_test_utils import write_frames

from ifr.data.dataset_mapper import YTVISDatasetMapper, clip_instances, sample_clip_frames

H, W = 20, 30


def _rle(mask):
    return mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))


def _frame_image(t):
    """A left-right asymmetric image: a horizontal ramp, plus t in the blue channel."""
    image = np.zeros((H, W, 3), np.uint8)
    image[..., 0] = np.arange(W, dtype=np.uint8)[None, :] * 8
    image[..., 2] = t * 40
    return image


def _box_mask(y0, y1, x0, x1):
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


# Track 5 (class 0) in every frame on the left; track 9 (class 1) only in frame 1.
MASKS = {
    5: [_box_mask(2, 6, 1, 5), _box_mask(3, 7, 2, 6), _box_mask(4, 8, 3, 7)],
    9: [None, _box_mask(10, 15, 20, 28), None],
}
CLASSES = {5: 0, 9: 1}


@pytest.fixture
def video(tmp_path):
    names = write_frames(str(tmp_path), "v", [_frame_image(t) for t in range(3)])
    annotations = []
    for t in range(3):
        frame = []
        for track_id in (9, 5):  # not in id order: the mapper must order instances itself
            mask = MASKS[track_id][t]
            if mask is not None:
                frame.append(
                    {
                        "id": track_id,
                        "category_id": CLASSES[track_id],
                        "segmentation": _rle(mask),
                        "bbox": [0, 0, 1, 1],
                        "bbox_mode": BoxMode.XYWH_ABS,
                    }
                )
        annotations.append(frame)
    return {
        "file_names": [str(tmp_path / n) for n in names],
        "height": H,
        "width": W,
        "length": 3,
        "video_id": 3,
        "annotations": annotations,
    }


@pytest.fixture
def input_cfg(make_cfg):
    """``input_cfg(KEY=value)``: 3-frame clips at the video's size, ``INPUT.<KEY>`` set."""

    def build(**input_keys):
        keys = {
            "MIN_SIZE_TRAIN": (H,),
            "MAX_SIZE_TRAIN": 1000,
            "MIN_SIZE_TEST": H,
            "MAX_SIZE_TEST": 1000,
            "SAMPLING_FRAME_NUM": 3,
            "SAMPLING_FRAME_RANGE": 2,
            "RANDOM_FLIP": "none",
            **input_keys,
        }
        return make_cfg(overrides={f"INPUT.{k}": v for k, v in keys.items()})

    return build


def test_train_output_keys_shapes_and_instance_order(video, input_cfg):
    out = YTVISDatasetMapper(input_cfg(), is_train=True)(video)
    assert out["frame_idx"] == [0, 1, 2]
    assert out["file_names"] == video["file_names"]
    assert (out["height"], out["width"], out["length"], out["video_id"]) == (H, W, 3, 3)
    for t, (image, inst) in enumerate(zip(out["image"], out["instances"])):
        assert image.dtype == torch.uint8 and image.shape == (3, H, W)
        assert torch.equal(image, torch.from_numpy(_frame_image(t)).permute(2, 0, 1))
        assert isinstance(inst, Instances) and inst.image_size == (H, W)
        assert isinstance(inst.gt_masks, BitMasks) and isinstance(inst.gt_boxes, Boxes)
        assert inst.gt_classes.tolist() == [0, 1]
        assert inst.gt_ids.dtype == torch.int64
        assert inst.gt_ids.tolist() == [5, 9 if t == 1 else -1]
        assert torch.equal(inst.gt_masks.tensor[0], torch.from_numpy(MASKS[5][t]))
        if t != 1:
            assert not inst.gt_masks.tensor[1].any()
            assert inst.gt_boxes.tensor[1].tolist() == [0, 0, 0, 0]
    assert out["instances"][1].gt_boxes.tensor[1].tolist() == [20, 10, 28, 15]


def test_resize_applies_to_images_masks_and_boxes(video, input_cfg):
    out = YTVISDatasetMapper(input_cfg(MIN_SIZE_TRAIN=(2 * H,)), is_train=True)(video)
    assert all(image.shape == (3, 2 * H, 2 * W) for image in out["image"])
    frame = out["instances"][1]
    assert frame.gt_masks.tensor.shape == (2, 2 * H, 2 * W)
    assert frame.gt_boxes.tensor[1].tolist() == [40, 20, 56, 30]
    assert frame.gt_masks.tensor[1].sum() == 4 * MASKS[9][1].sum()


def test_one_flip_decision_for_the_whole_clip(video, input_cfg):
    mapper = YTVISDatasetMapper(input_cfg(RANDOM_FLIP="flip_by_clip"), is_train=True)
    seen = set()
    np.random.seed(0)
    for _ in range(16):
        out = mapper(video)
        flipped = [
            torch.equal(image, torch.from_numpy(_frame_image(t)[:, ::-1].copy()).permute(2, 0, 1))
            for t, image in enumerate(out["image"])
        ]
        assert len(set(flipped)) == 1  # every frame flipped, or none
        for t, inst in enumerate(out["instances"]):
            expected = MASKS[5][t][:, ::-1] if flipped[0] else MASKS[5][t]
            assert torch.equal(inst.gt_masks.tensor[0], torch.from_numpy(expected.copy()))
        seen.add(flipped[0])
    assert seen == {True, False}


def test_short_video_is_sampled_with_repetition(video, input_cfg):
    one_frame = dict(
        video, length=1, file_names=video["file_names"][:1], annotations=video["annotations"][:1]
    )
    out = YTVISDatasetMapper(input_cfg(), is_train=True)(one_frame)
    assert out["frame_idx"] == [0, 0, 0] and len(out["instances"]) == 3
    assert all(inst.gt_ids.tolist() == [5] for inst in out["instances"])


def test_test_mapper_gives_all_frames_and_no_instances(video, input_cfg):
    out = YTVISDatasetMapper(input_cfg(MIN_SIZE_TEST=2 * H), is_train=False)(video)
    assert out["frame_idx"] == [0, 1, 2] and "instances" not in out
    assert all(image.shape == (3, 2 * H, 2 * W) for image in out["image"])


def test_unknown_flip_mode_is_refused(input_cfg):
    with pytest.raises(ValueError, match="RANDOM_FLIP"):
        YTVISDatasetMapper(input_cfg(RANDOM_FLIP="flip_by_frame"), is_train=True)


@pytest.mark.parametrize(
    "length,num,window,shuffle",
    [(36, 2, 20, False), (36, 5, 3, False), (10, 4, 20, True), (3, 5, 20, False)],
)
def test_sample_clip_frames(length, num, window, shuffle):
    np.random.seed(1)
    for _ in range(50):
        frames = sample_clip_frames(length, num, window, shuffle)
        assert len(frames) == num and all(0 <= i < length for i in frames)
        assert max(frames) - min(frames) <= 2 * window
        if num <= min(length, window + 1):
            assert len(set(frames)) == num  # the window always holds enough frames
        else:  # every frame of the window (at least window + 1 of them) is used
            assert len(set(frames)) >= min(length, window + 1)
        if not shuffle:
            assert frames == sorted(frames)


def _obj(track_id, mask, category_id=0, **extra):
    return {"id": track_id, "category_id": category_id, "segmentation": _rle(mask), **extra}


def test_crowd_tracks_are_no_targets():
    frames = [
        [_obj(5, MASKS[5][t]), _obj(7, _box_mask(0, 20, 10, 30), 1, iscrowd=1)] for t in range(3)
    ]
    instances = clip_instances(frames, T.TransformList([]), (H, W), (H, W))
    assert [inst.gt_ids.tolist() for inst in instances] == [[5], [5], [5]]
    assert all(inst.gt_classes.tolist() == [0] for inst in instances)
    assert all(inst.gt_masks.tensor.shape == (1, H, W) for inst in instances)


def test_tracks_empty_in_every_frame_after_augmentation_are_dropped():
    """A crop to the left half (x < 15) hides track 9 (x 20..27) in every frame, and track
    4 in frame 0 only; track 3 is annotated with an empty mask."""
    empty = np.zeros((H, W), bool)
    frames = [
        [_obj(5, MASKS[5][0]), _obj(4, _box_mask(0, 3, 16, 20)), _obj(3, empty)],
        [_obj(5, MASKS[5][1]), _obj(9, MASKS[9][1], 1), _obj(4, _box_mask(0, 3, 10, 14))],
    ]
    crop = T.TransformList([T.CropTransform(0, 0, 15, H)])
    instances = clip_instances(frames, crop, (H, W), (H, 15))
    assert [inst.gt_ids.tolist() for inst in instances] == [[-1, 5], [4, 5]]
    assert instances[0].gt_classes.tolist() == [0, 0]
    assert not instances[0].gt_masks.tensor[0].any()
    assert instances[1].gt_masks.tensor[0].sum() == 3 * 4
    assert instances[1].gt_boxes.tensor[0].tolist() == [10, 0, 14, 3]
    # Nothing visible at all: M = 0 in every frame, shapes still consistent.
    none = clip_instances([[_obj(9, MASKS[9][1], 1)]], crop, (H, W), (H, 15))[0]
    assert none.gt_masks.tensor.shape == (0, H, 15) and none.gt_ids.shape == (0,)
    assert none.gt_classes.shape == (0,) and none.gt_boxes.tensor.shape == (0, 4)


def test_a_frame_that_cannot_be_decoded_is_named_with_its_video(tmp_path):
    from ifr.data.dataset_mapper import UnreadableFrameError, read_frame

    good = tmp_path / "good.jpg"
    from PIL import Image

    Image.new("RGB", (8, 6)).save(good)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:40])
    video = {"video_id": 7, "file_names": [str(good), str(truncated)]}
    assert read_frame(video, 0, "RGB").shape == (6, 8, 3)
    with pytest.raises(UnreadableFrameError, match=rf"video id 7, frame 1: {truncated} cannot"):
        read_frame(video, 1, "RGB")


def test_vistr_random_size_crop_cuts_frames_and_masks_alike(video, input_cfg):
    """VisTR's crop chain on a 20 x 30 video: pre-resize to shorter side 40 (40 x 60), a
    crop of sides in [16, 24], one crop for the clip, masks cut alike; then the final
    resize to shorter side 16."""
    cfg = input_cfg(
        MIN_SIZE_TRAIN=(16,),
        **{
            "RANDOM_SIZE_CROP.ENABLED": True,
            "RANDOM_SIZE_CROP.PRE_RESIZE": (40,),
            "RANDOM_SIZE_CROP.MIN_SIZE": 16,
            "RANDOM_SIZE_CROP.MAX_SIZE": 24,
        },
    )
    mapper = YTVISDatasetMapper(cfg, is_train=True)
    np.random.seed(0)
    shapes = set()
    for _ in range(8):
        out = mapper(video)
        sizes = {tuple(image.shape[-2:]) for image in out["image"]}
        assert len(sizes) == 1  # one crop for the clip
        (size,) = sizes
        assert min(size) == 16  # the final resize
        shapes.add(size)
        for image, inst in zip(out["image"], out["instances"]):
            assert inst.image_size == size and inst.gt_masks.tensor.shape[-2:] == size
    assert len(shapes) > 1  # the crop's aspect ratio is drawn


def test_photometric_distortion_is_drawn_per_frame_and_leaves_masks(video, input_cfg):
    mapper = YTVISDatasetMapper(input_cfg(PHOTOMETRIC_DISTORTION=True), is_train=True)
    np.random.seed(1)
    changed, differs_between_frames = False, False
    for _ in range(6):
        out = mapper(video)
        deltas = [
            image.float() - torch.from_numpy(_frame_image(t)).permute(2, 0, 1).float()
            for t, image in enumerate(out["image"])
        ]
        changed |= any(bool(d.abs().max() > 0) for d in deltas)
        differs_between_frames |= not torch.allclose(deltas[0], deltas[2])
        for t, inst in enumerate(out["instances"]):
            assert torch.equal(inst.gt_masks.tensor[0], torch.from_numpy(MASKS[5][t]))
    assert changed and differs_between_frames
