"""ifr/engine/demo.py: output checks and the class names the demo labels with."""

import logging
import os

import pytest
from detectron2.data import MetadataCatalog

from ifr.engine.demo import DemoOutputError, check_outputs, class_names_for
from ifr.utils.errors import UserInputError

TINY = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tiny", "ifr_tiny.yaml")


@pytest.fixture
def tiny_cfg(make_cfg):
    return make_cfg(TINY)


def test_checkpoint_names_win_over_the_config(tiny_cfg):
    extras = {"class_names": ["dog", "cat", "bird"]}
    assert class_names_for("", extras, tiny_cfg) == ["dog", "cat", "bird"]


def test_classes_flag_overrides_the_checkpoint(tiny_cfg):
    extras = {"class_names": ["dog", "cat", "bird"]}
    assert class_names_for("a, b ,c", extras, tiny_cfg) == ["a", "b", "c"]
    named = class_names_for("ytvis_tiny_train", extras, tiny_cfg)  # a dataset name
    assert named == list(MetadataCatalog.get("ytvis_tiny_train").thing_classes)


def test_classes_of_another_count_are_refused(tiny_cfg):
    with pytest.raises(UserInputError, match="gives 2 class names.*NUM_CLASSES 3"):
        class_names_for("dog,cat", {}, tiny_cfg)
    with pytest.raises(UserInputError, match="'ytvis_2019_val' gives 40 class names"):
        class_names_for("ytvis_2019_val", {}, tiny_cfg)


def test_old_checkpoint_falls_back_to_the_test_dataset_with_a_warning(tiny_cfg, ifr_caplog):
    tiny_cfg.MODEL.WEIGHTS = "old_model.pth"
    with ifr_caplog.at_level(logging.WARNING):
        names = class_names_for("", {}, tiny_cfg)
    assert names == list(MetadataCatalog.get("ytvis_tiny_val").thing_classes)
    assert "holds no class names" in ifr_caplog.text
    tiny_cfg.DATASETS.TEST = ()
    assert class_names_for("", {}, tiny_cfg) is None  # labels "class k"


def test_outputs_that_would_overwrite_inputs_are_refused(tmp_path):
    video = tmp_path / "in.mp4"
    video.write_bytes(b"x")
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "0.png").write_bytes(b"x")
    with pytest.raises(DemoOutputError, match="is the input video"):
        check_outputs([str(video)], str(tmp_path / "." / "in.mp4"))
    link = tmp_path / "link.mp4"
    link.symlink_to(video)
    with pytest.raises(DemoOutputError, match="is the input video"):
        check_outputs([str(video)], str(link))
    with pytest.raises(DemoOutputError, match="holds the input"):
        check_outputs([str(frames / "0.png")], str(tmp_path / "o.mp4"), str(frames))
    with pytest.raises(DemoOutputError, match="exists and is not a folder"):
        check_outputs([str(video)], str(tmp_path / "o.mp4"), str(video))
    with pytest.raises(DemoOutputError, match="the same path"):
        check_outputs([str(video)], str(tmp_path / "o.mp4"), str(tmp_path / "o.mp4"))
    # Allowed: a new folder, the input video's own folder for drawn frames, any new .mp4.
    check_outputs([str(video)], str(tmp_path / "new" / "o.MP4"), str(tmp_path))
    check_outputs([str(frames / "0.png")], str(frames / "drawn.mp4"), str(tmp_path / "drawn"))


def test_class_colors_come_from_the_same_source_as_the_names(tiny_cfg):
    from ifr.engine.demo import class_colors_for

    saved = {"class_names": ["dog", "cat", "bird"], "class_colors": [[1, 2, 3]] * 3}
    assert class_colors_for("", saved, tiny_cfg) == [[1, 2, 3]] * 3
    tiny_colors = MetadataCatalog.get("ytvis_tiny_val").thing_colors
    assert class_colors_for("ytvis_tiny_val", saved, tiny_cfg) == tiny_colors
    assert class_colors_for("a,b,c", saved, tiny_cfg) is None  # names only: track colours
    assert class_colors_for("", {}, tiny_cfg) == tiny_colors  # old checkpoint: the config's
