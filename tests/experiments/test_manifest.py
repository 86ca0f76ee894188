import json
import os

import pytest

from ifr.experiments.grid import SweepParam, expand_grid
from ifr.experiments.manifest import (
    DONE,
    FAILED,
    PENDING,
    SweepManifest,
    load_manifest,
    merge_manifests,
    refresh_states,
    save_manifest,
)


def make_manifest(values=("0.1", "0.3"), seeds=(0, 1), config="/c.yaml", overrides=()):
    params = [SweepParam("MODEL.IFR.LAMBDA_E", tuple(values))]
    return SweepManifest.create(
        config, "/train.py", params, list(seeds), list(overrides), expand_grid(params, seeds)
    )


def test_round_trip(tmp_path):
    manifest = make_manifest(overrides=[("SOLVER.MAX_ITER", "10")])
    manifest.runs["MODEL.IFR.LAMBDA_E=0.1/seed=1"].mark(FAILED, exit_code=3, attempts=1)
    save_manifest(manifest, str(tmp_path))
    assert load_manifest(str(tmp_path)) == manifest
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_invalid_manifest_is_named(tmp_path):
    (tmp_path / "sweep.json").write_text(json.dumps({"version": 1, "runs": []}))
    with pytest.raises(ValueError, match="sweep.json"):
        load_manifest(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no sweep manifest"):
        load_manifest(str(tmp_path / "elsewhere"))


def test_refresh_states_follows_final_metrics(tmp_path):
    manifest = make_manifest()
    name = "MODEL.IFR.LAMBDA_E=0.3/seed=0"
    os.makedirs(tmp_path / name)
    (tmp_path / name / "final_metrics.json").write_text("{}")
    refresh_states(manifest, str(tmp_path))
    assert manifest.runs[name].state == DONE
    assert manifest.runs["MODEL.IFR.LAMBDA_E=0.1/seed=0"].state == PENDING
    os.remove(tmp_path / name / "final_metrics.json")
    refresh_states(manifest, str(tmp_path))
    assert manifest.runs[name].state == PENDING


def test_merge_extends_values_and_seeds_and_keeps_records(tmp_path):
    old = make_manifest()
    old.runs["MODEL.IFR.LAMBDA_E=0.1/seed=0"].mark(FAILED, exit_code=1, attempts=2)
    new = make_manifest(values=("0.3", "0.5"), seeds=(0, 2))
    merged = merge_manifests(new, old, str(tmp_path))
    assert merged.params[0].values == ("0.1", "0.3", "0.5")
    assert merged.seeds == [0, 1, 2]
    assert len(merged.runs) == 4 + 3  # old 2x2, plus 0.3/2, 0.5/0, 0.5/2
    assert merged.runs["MODEL.IFR.LAMBDA_E=0.1/seed=0"].attempts == 2


@pytest.mark.parametrize(
    "change", [dict(config="/other.yaml"), dict(overrides=[("SOLVER.MAX_ITER", "5")])]
)
def test_merge_refuses_another_experiment(tmp_path, change):
    with pytest.raises(ValueError, match="use another --output-dir"):
        merge_manifests(make_manifest(**change), make_manifest(), str(tmp_path))


def test_a_comparison_folder_is_named_as_such(tmp_path):
    save_manifest(make_manifest(), str(tmp_path / "cmp" / "ifr_tiny"))
    with pytest.raises(FileNotFoundError, match=r"sweeps \['ifr_tiny'\] of a comparison"):
        load_manifest(str(tmp_path / "cmp"))
    with pytest.raises(FileNotFoundError, match="is .* a sweep folder"):
        load_manifest(str(tmp_path / "nowhere"))
