"""A dataset of one's own named only on the command line (DATASETS.REGISTER): trained,
evaluated and run through the demo, its class count taken from the json."""

import json
import os
import subprocess
import sys

import pytest

from ifr.data.datasets import CustomDatasetError, register_custom_datasets
from ifr.data.datasets.custom import parse_dataset_spec
from ifr.data.tiny import generate_tiny_ytvis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "configs", "tiny", "ifr_tiny.yaml")
FAST = ["SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2", "MODEL.VIS.NUM_QUERIES", "5"]
FAST += ["MODEL.VIS.TRAIN_NUM_POINTS", "64"]


def two_class_dataset(folder):
    """4 tiny videos with the third category (and its tracks) removed: 2 classes."""
    image_root, json_file = generate_tiny_ytvis(str(folder), "clips", 4, 4, seed=9)
    data = json.load(open(json_file))
    data["categories"] = [c for c in data["categories"] if c["id"] != 3]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] != 3]
    mine = folder / "mine.json"
    mine.write_text(json.dumps(data))
    return str(mine), image_root


def _run(tool, *args):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "tools", tool), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_train_evaluate_and_demo_on_a_dataset_named_on_the_command_line(tmp_path):
    json_file, image_root = two_class_dataset(tmp_path)
    register = ["DATASETS.REGISTER", f'["mine={json_file}:{image_root}"]']
    data = ["DATASETS.TRAIN", '("mine",)', "DATASETS.TEST", '("mine",)']
    data += ["TEST.TRACKING_TUNE_DATASET", ""]  # the tiny config's tune split has 3 classes
    out = tmp_path / "run"
    trained = _run(
        "train_net.py", "--config-file", TINY, *FAST, *register, *data, "OUTPUT_DIR", str(out)
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    config = open(out / "config.yaml").read()
    assert "NUM_CLASSES: 2" in config  # from the json, not the yaml's 3
    results = json.load(open(out / "inference" / "mine" / "results.json"))
    assert {r["video_id"] for r in results} == {1, 2, 3, 4}
    assert {r["category_id"] for r in results} <= {1, 2}
    assert "AP" in json.load(open(out / "final_metrics.json"))
    # The run's saved config names the dataset too: from the checkpoint alone (its
    # config.yaml beside it), the demo and an evaluation need nothing else.
    evaluated = _run(
        "train_net.py",
        "--eval-only",
        "MODEL.WEIGHTS",
        str(out / "model_final.pth"),
        "OUTPUT_DIR",
        str(tmp_path / "eval"),
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert json.load(open(tmp_path / "eval" / "inference" / "mine" / "results.json")) == results
    demo = _run(
        "demo.py",
        "--input",
        os.path.join(image_root, "clips_000"),
        "--output",
        str(tmp_path / "demo.mp4"),
        "MODEL.WEIGHTS",
        str(out / "model_final.pth"),
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert os.path.getsize(tmp_path / "demo.mp4") > 0


def test_spec_parsing_and_errors_name_the_entry(tmp_path):
    assert parse_dataset_spec("a=x/y.json:frames/") == ("a", "x/y.json", "frames/")
    with pytest.raises(CustomDatasetError, match="expected NAME=ANNOTATIONS.json:FRAMES_FOLDER"):
        parse_dataset_spec("a=x/y.txt")
    with pytest.raises(CustomDatasetError, match="annotations '.*absent.json' not found"):
        register_custom_datasets([f"absent_ds={tmp_path}/absent.json:{tmp_path}"])
    json_file, image_root = two_class_dataset(tmp_path)
    register_custom_datasets([f"custom_twice={json_file}:{image_root}"])
    register_custom_datasets([f"custom_twice={json_file}:{image_root}"])  # same files: fine
    with pytest.raises(CustomDatasetError, match="already registered"):
        register_custom_datasets([f"ytvis_tiny_val={json_file}:{image_root}"])


def test_without_a_config_file_the_config_beside_the_weights_is_used(tmp_path):
    from ifr.engine.defaults import ConfigError, config_beside_weights

    weights = tmp_path / "model_final.pth"
    assert config_beside_weights("a.yaml", ["MODEL.WEIGHTS", str(weights)]) == "a.yaml"
    with pytest.raises(ConfigError, match="config.yaml does not exist"):
        config_beside_weights("", ["MODEL.WEIGHTS", str(weights)])
    with pytest.raises(ConfigError, match="--config-file is needed"):
        config_beside_weights("", ["SOLVER.MAX_ITER", "5"])
    (tmp_path / "config.yaml").write_text("SEED: 3\n")
    found = config_beside_weights("", ["SEED", "1", "MODEL.WEIGHTS", str(weights)])
    assert found == str(tmp_path / "config.yaml")
