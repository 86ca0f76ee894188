import logging
import os
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from ifr.checkpoint import (
    IFRCheckpointer,
    UnsafeCheckpointError,
    load_arrays_pickle,
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
    assert np.array_equal(load_arrays_pickle(str(path))["model"]["backbone.weight"], weights["backbone.weight"])
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
    assert "Loaded 2 of" in text
    assert "transformer_decoder.temporal_layer" in text
    assert "transformer_decoder.query_feat" in text


def test_missing_weights_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        IFRCheckpointer(TinyIFRLike()).load(str(tmp_path / "nope.pth"))
