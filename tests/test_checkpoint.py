import logging
import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from ifr.checkpoint import (
    CheckpointFormatError,
    IFRCheckpointer,
    IncompleteCheckpointError,
    UnsafeCheckpointError,
    load_arrays_pickle,
    load_inference_weights,
    rename_mask2former_keys,
)


class TinyIFRLike(nn.Module):
    """Module names of the IFR meta-architecture, with a head that has no counterpart."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(3, 4)
        self.pixel_decoder = nn.Linear(4, 4)
        self.transformer_decoder = nn.ModuleDict(
            {"query_feat": nn.Embedding(5, 4), "temporal_layer": nn.Linear(4, 4)}
        )


class NotATensor:
    def __init__(self, value):
        self.value = value


class RunsCode:
    """Unpickling this calls os.makedirs(path): what a malicious checkpoint would do."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (self.path,))


def test_save_is_atomic_and_round_trips(tmp_path):
    model = TinyIFRLike()
    ckpt = IFRCheckpointer(model, str(tmp_path))
    ckpt.save("model_0000009", iteration=9)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]

    other = TinyIFRLike()
    extra = IFRCheckpointer(other, str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 9
    for (k, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert torch.equal(a, b), k


def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = TinyIFRLike()
    ckpt = IFRCheckpointer(model, str(tmp_path))
    ckpt.save("model_0000001")
    before = (tmp_path / "model_0000001.pth").read_bytes()

    def save_half_then_die(obj, f):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_0000002")
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert not (tmp_path / "model_0000002.pth").exists()
    assert (tmp_path / "model_0000001.pth").read_bytes() == before
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_pth_with_arbitrary_objects_is_refused_unless_allowed(tmp_path):
    model = TinyIFRLike()
    path = str(tmp_path / "untrusted.pth")
    torch.save({"model": model.state_dict(), "extra": NotATensor(3)}, path)
    with pytest.raises(UnsafeCheckpointError, match="WEIGHTS_ALLOW_PICKLE"):
        IFRCheckpointer(TinyIFRLike()).load(path)
    loaded = IFRCheckpointer(TinyIFRLike(), allow_pickle=True).load(path)
    assert loaded["extra"].value == 3


def test_pkl_code_is_never_run(tmp_path):
    target = tmp_path / "created_by_pickle"
    path = tmp_path / "evil.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": {"w": RunsCode(str(target))}, "__author__": "x"}, f)
    with pytest.raises(UnsafeCheckpointError):
        IFRCheckpointer(TinyIFRLike()).load(str(path))
    assert not target.exists()


def test_detectron2_style_pkl_with_numpy_arrays_loads(tmp_path):
    weights = {"backbone.weight": np.full((4, 3), 0.5, dtype=np.float32)}
    path = tmp_path / "zoo.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": weights, "__author__": "mask2former"}, f, protocol=2)
    loaded = load_arrays_pickle(str(path))["model"]["backbone.weight"]
    assert np.array_equal(loaded, weights["backbone.weight"])
    model = TinyIFRLike()
    IFRCheckpointer(model).load(str(path))
    assert torch.all(model.backbone.weight == 0.5)


def test_mask2former_keys_map_onto_ifr_modules():
    renamed = rename_mask2former_keys(
        {
            "backbone.res2.0.conv1.weight": 1,
            "sem_seg_head.pixel_decoder.mask_features.weight": 2,
            "sem_seg_head.predictor.query_feat.weight": 3,
            "criterion.empty_weight": 4,
        }
    )
    assert renamed == {
        "backbone.res2.0.conv1.weight": 1,
        "pixel_decoder.mask_features.weight": 2,
        "transformer_decoder.query_feat.weight": 3,
    }


def test_static_query_of_model_zoo_files_loads_as_query_feat():
    """Some Mask2Former model-zoo files store the query features as ``static_query``; the
    official decoders load them as ``query_feat``."""
    renamed = rename_mask2former_keys({"sem_seg_head.predictor.static_query.weight": 5})
    assert renamed == {"transformer_decoder.query_feat.weight": 5}


def test_mask2former_checkpoint_loads_counterparts_and_logs_the_rest(tmp_path, caplog):
    source = TinyIFRLike()
    m2f_state = {
        "backbone.weight": source.backbone.weight.detach(),
        "sem_seg_head.pixel_decoder.weight": source.pixel_decoder.weight.detach(),
        "sem_seg_head.predictor.query_feat.weight": torch.ones(200, 4),  # 200 queries: no fit
    }
    path = str(tmp_path / "m2f.pth")
    torch.save({"model": m2f_state}, path)
    target = TinyIFRLike()
    with caplog.at_level(logging.INFO):
        IFRCheckpointer(target).load(path)
    assert torch.equal(target.backbone.weight, source.backbone.weight)
    assert torch.equal(target.pixel_decoder.weight, source.pixel_decoder.weight)
    assert not torch.equal(target.transformer_decoder["query_feat"].weight, torch.ones(5, 4))
    text = caplog.text
    assert "loaded 2 of" in text
    assert "transformer_decoder.temporal_layer" in text
    assert "transformer_decoder.query_feat" in text


def test_missing_weights_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        IFRCheckpointer(TinyIFRLike()).load(str(tmp_path / "nope.pth"))


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("list.pkl", [1, 2, 3], "holds a list"),
        ("text.pkl", "just a string", "holds a str"),
        ("int.pkl", 7, "holds a int"),
        ("strings.pkl", {"model": {"backbone.weight": "abc"}}, "'backbone.weight' is a str"),
        ("empty.pkl", {"model": {}}, "holds no tensors"),
    ],
)
def test_pkl_that_is_not_a_checkpoint_is_named(tmp_path, name, content, expected):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(content, protocol=2))
    with pytest.raises(CheckpointFormatError, match=f"{name}: .*{expected}"):
        IFRCheckpointer(TinyIFRLike()).load(str(path))


@pytest.mark.parametrize(
    "content, expected",
    [([torch.ones(2)], "holds a list"), ({"model": {"w": 3}}, "'w' is a int")],
)
def test_pth_that_is_not_a_checkpoint_is_named(tmp_path, content, expected):
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(CheckpointFormatError, match=f"odd.pth: .*{expected}"):
        IFRCheckpointer(TinyIFRLike()).load(str(path))


def test_text_file_as_pth_is_named(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    with pytest.raises(CheckpointFormatError, match="notes.pth: not a readable torch checkpoint"):
        IFRCheckpointer(TinyIFRLike()).load(str(path))


def _save_model_weights(tmp_path, model, name="full.pth", **extra):
    path = str(tmp_path / name)
    torch.save({"model": model.state_dict(), **extra}, path)
    return path


def test_require_complete_refuses_unrelated_weights_and_lists_what_is_missing(tmp_path):
    path = str(tmp_path / "unrelated.pth")
    torch.save({"model": {"head.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(IncompleteCheckpointError) as info:
        IFRCheckpointer(TinyIFRLike(), require_complete=True).load(path)
    message = str(info.value)
    model_size = len(TinyIFRLike().state_dict())
    assert f"unrelated.pth: {model_size} of {model_size} model tensors" in message
    assert "backbone (2)" in message and "transformer_decoder.temporal_layer (2)" in message
    assert "MODEL.WEIGHTS_ALLOW_PARTIAL" in message
    IFRCheckpointer(TinyIFRLike()).load(path)  # training (not required complete) accepts it


def test_require_complete_names_a_class_head_of_another_shape(tmp_path):
    source = TinyIFRLike()
    state = dict(source.state_dict())
    state["transformer_decoder.query_feat.weight"] = torch.zeros(9, 4)  # 9 queries, not 5
    path = str(tmp_path / "other.pth")
    torch.save({"model": state}, path)
    with pytest.raises(IncompleteCheckpointError, match=r"query_feat.weight \(9, 4\) in the file"):
        IFRCheckpointer(TinyIFRLike(), require_complete=True).load(path)
    target = TinyIFRLike()
    IFRCheckpointer(target, require_complete=True).load(_save_model_weights(tmp_path, source))
    assert torch.equal(target.backbone.weight, source.backbone.weight)


def test_extra_data_travels_with_the_checkpoint(tmp_path):
    names = {"class_names": ["disc", "square"], "class_colors": [[1, 2, 3], [4, 5, 6]]}
    IFRCheckpointer(TinyIFRLike(), str(tmp_path), extra_data=names).save("model_final")
    extra = IFRCheckpointer(TinyIFRLike()).load(str(tmp_path / "model_final.pth"))
    assert extra["class_names"] == ["disc", "square"]
    assert extra["class_colors"] == [[1, 2, 3], [4, 5, 6]]


def test_inference_weights_refuse_partial_unless_allowed_and_warn_without_weights(
    tmp_path, make_cfg, ifr_caplog
):
    partial = str(tmp_path / "partial.pth")
    torch.save({"model": {"backbone.weight": torch.zeros(4, 3)}}, partial)
    cfg = make_cfg(overrides={"MODEL.WEIGHTS": partial})
    with pytest.raises(IncompleteCheckpointError, match="partial.pth"):
        load_inference_weights(TinyIFRLike(), cfg)
    cfg.MODEL.WEIGHTS_ALLOW_PARTIAL = True
    model = TinyIFRLike()
    load_inference_weights(model, cfg)
    assert torch.all(model.backbone.weight == 0)
    cfg.MODEL.WEIGHTS = ""
    with ifr_caplog.at_level(logging.WARNING):
        assert load_inference_weights(TinyIFRLike(), cfg) == {}
    assert "UNTRAINED" in ifr_caplog.text


def test_the_load_summary_is_one_line_naming_what_loaded_and_what_went_unused(tmp_path, caplog):
    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    path = tmp_path / "w.pth"
    torch.save(
        {
            "model": {
                "0.weight": torch.ones(3, 2),
                "1.weight": torch.ones(2, 2),
                "extra.w": torch.ones(1),
            }
        },
        path,
    )
    with caplog.at_level(logging.INFO):
        IFRCheckpointer(model).load(str(path))
    lines = [r.getMessage() for r in caplog.records if "model tensors" in r.getMessage()]
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith(f"{path}: loaded 1 of 4 model tensors; not loaded")
    # Grouped by module: 0.bias absent; 1.weight another shape and 1.bias absent.
    assert "not loaded (keep their initialisation): 0 (1), 1 (2);" in line
    assert "unused, not in the model: extra (1)" in line
    assert "unused, another shape: 1 (1)" in line
