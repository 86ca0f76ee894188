"""ifr/experiments/compare.py (and the fast paths of tools/compare.py): the Table-3-plus-AP
layout from hand-made metrics with hand-computed mean ± std, the checks made before any
run, and a comparison through a fake training script that fails, resumes and tabulates."""

import csv
import json
import math
import os

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

from ifr.experiments.compare import (
    ConfigSweep,
    check_labels,
    prepare_comparison,
    run_comparison,
    summarize_comparison,
    write_comparison_table,
)
from ifr.experiments.grid import expand_grid
from ifr.experiments.manifest import DONE, FAILED, SweepManifest, load_manifest, save_manifest
from ifr.experiments.plot import build_comparison_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Hand-made final metrics: config "ifr" has three finished seeds, "base" two of three.
IFR_RUNS = {
    0: {"AP": 40.0, "AP50": 60.0, "IDF1": 70.0, "MOTA": 45.0, "IDP": 80.0, "IDs": 50, "HOTA": 55.0},
    1: {"AP": 42.0, "AP50": 60.0, "IDF1": 72.0, "MOTA": 47.0, "IDP": 82.0, "IDs": 52, "HOTA": 56.0},
    2: {"AP": 47.0, "AP50": 60.0, "IDF1": 74.0, "MOTA": 49.0, "IDP": 84.0, "IDs": 60, "HOTA": 57.0},
}
BASE_RUNS = {
    0: {"AP": 30.0, "AP50": 50.0, "IDF1": 60.0, "MOTA": -5.0, "IDP": -1.0, "IDs": 200},
    1: {"AP": 31.0, "AP50": 52.0, "IDF1": 62.0, "MOTA": -1.0, "IDP": 80.0, "IDs": 204},
}


def write_config_sweep(output_dir, label, runs, seeds=(0, 1, 2)):
    """DIR/<label> as tools/compare.py leaves it; seeds without metrics are unfinished."""
    sweep_dir = os.path.join(output_dir, label)
    manifest = SweepManifest.create(
        f"/{label}.yaml", "/t.py", [], list(seeds), [], expand_grid([], seeds)
    )
    save_manifest(manifest, sweep_dir)
    for seed, metrics in runs.items():
        os.makedirs(os.path.join(sweep_dir, f"seed={seed}"))
        with open(os.path.join(sweep_dir, f"seed={seed}", "final_metrics.json"), "w") as f:
            json.dump(metrics, f)
    return ConfigSweep(label, sweep_dir, manifest)


@pytest.fixture
def hand_made(tmp_path):
    output_dir = str(tmp_path / "cmp")
    return output_dir, [
        write_config_sweep(output_dir, "ifr", IFR_RUNS),
        write_config_sweep(output_dir, "base", BASE_RUNS),
    ]


def test_table_rows_hold_hand_computed_mean_std_and_n(hand_made):
    output_dir, sweeps = hand_made
    lines = []
    summary = write_comparison_table(sweeps, output_dir, echo=lines.append)
    # Columns: the table's metrics that some run reports, in the paper's order.
    assert summary.metrics == ["AP", "AP50", "IDF1", "MOTA", "IDP", "IDs", "HOTA"]
    table = open(os.path.join(output_dir, "table.md")).read()
    assert table in lines
    assert "| config | runs | AP | AP50 | IDF1 | MOTA | IDP | IDs | HOTA |" in table
    # ifr AP 40, 42, 47: mean 43, squared deviations 9 + 1 + 16 = 26, std sqrt(26 / 2) = 3.61.
    # IDs 50, 52, 60: mean 54, squares 16 + 4 + 36 = 56, std sqrt(28) = 5.29.
    assert (
        "| ifr | 3/3 | 43.0 ± 3.6 (3) | 60.0 ± 0.0 (3) | 72.0 ± 2.0 (3) | 47.0 ± 2.0 (3) "
        "| 82.0 ± 2.0 (3) | 54.0 ± 5.3 (3) | 56.0 ± 1.0 (3) |"
    ) in table
    # base: two runs of three; AP 30, 31 -> 30.5 ± sqrt(0.5) = 0.71; MOTA may be negative
    # (-5, -1 -> -3.0 ± 2.83); IDP -1 means "nothing to measure": one value left; no HOTA.
    assert (
        "| base | 2/3 | 30.5 ± 0.7 (2) | 51.0 ± 1.4 (2) | 61.0 ± 1.4 (2) | -3.0 ± 2.8 (2) "
        "| 80.0 ± - (1) | 202.0 ± 2.8 (2) | - |"
    ) in table
    assert "over seeds 0, 1, 2" in table
    assert "- base/seed=2 (pending): " in table


def test_csv_has_exact_statistics(hand_made):
    output_dir, sweeps = hand_made
    write_comparison_table(sweeps, output_dir, metrics=["AP", "IDs"], echo=lambda line: None)
    with open(os.path.join(output_dir, "table.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [(r["config"], r["n"]) for r in rows] == [("ifr", "3"), ("base", "2")]
    assert float(rows[0]["AP_mean"]) == 43.0
    assert float(rows[0]["AP_std"]) == pytest.approx(math.sqrt(13.0))
    assert float(rows[1]["IDs_std"]) == pytest.approx(np.std([200, 204], ddof=1))
    assert list(rows[0]) == [
        "config",
        "n",
        "AP_mean",
        "AP_std",
        "AP_n",
        "IDs_mean",
        "IDs_std",
        "IDs_n",
    ]


def test_figure_has_a_bar_per_config_in_every_metric_panel(hand_made):
    output_dir, sweeps = hand_made
    write_comparison_table(sweeps, output_dir, echo=lambda line: None)
    with open(os.path.join(output_dir, "table.png"), "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    summary = summarize_comparison(sweeps)
    figure = build_comparison_figure(summary)
    assert [a.get_title() for a in figure.axes] == summary.metrics
    ap, hota = figure.axes[0], figure.axes[-1]
    assert [p.get_height() for p in ap.patches] == pytest.approx([43.0, 30.5])
    # error bars: the segment of each bar spans mean ± std
    bars = [c for c in ap.containers if isinstance(c, ErrorbarContainer)]
    spans = [c.lines[2][0].get_segments()[0][:, 1] for c in bars]
    assert spans[0] == pytest.approx([43 - math.sqrt(13), 43 + math.sqrt(13)])
    assert spans[1] == pytest.approx([30.5 - math.sqrt(0.5), 30.5 + math.sqrt(0.5)])
    assert [p.get_height() for p in hota.patches] == pytest.approx([56.0])  # base: no HOTA
    assert [t.get_text() for t in figure.legends[0].get_texts()] == ["ifr", "base"]


def test_a_truncated_metrics_file_is_a_missing_run(hand_made):
    output_dir, sweeps = hand_made
    with open(os.path.join(output_dir, "ifr", "seed=2", "final_metrics.json"), "w") as f:
        f.write('{"AP": 4')
    summary = write_comparison_table(sweeps, output_dir, metrics=["AP"], echo=lambda line: None)
    assert summary.settings[0].stats["AP"].mean == 41.0
    assert "- ifr/seed=2 (unreadable: " in open(os.path.join(output_dir, "table.md")).read()


def test_no_finished_run_is_an_error(tmp_path):
    output_dir = str(tmp_path / "cmp")
    sweeps = [write_config_sweep(output_dir, "a", {}), write_config_sweep(output_dir, "b", {})]
    with pytest.raises(ValueError, match="no finished run"):
        write_comparison_table(sweeps, output_dir, echo=lambda line: None)


# --- checks before any run ---------------------------------------------------------------


def yaml_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text("VERSION: 2\n" + text)
    return str(path)


def test_configs_must_be_two_with_distinct_names(tmp_path):
    with pytest.raises(ValueError, match="at least two"):
        check_labels(["a.yaml"])
    with pytest.raises(ValueError, match="same name 'a'"):
        check_labels(["x/a.yaml", "y/a.yaml"])
    assert check_labels(["x/a.yaml", "y/b.yml"]) == ["a", "b"]


def test_configs_must_share_data_and_iterations(tmp_path, fake_train_script):
    a = yaml_file(tmp_path, "a.yaml", "SOLVER:\n  MAX_ITER: 10\n")
    b = yaml_file(tmp_path, "b.yaml", "SOLVER:\n  MAX_ITER: 20\n")
    output_dir = tmp_path / "cmp"
    message = r"SOLVER.MAX_ITER \(a: 10, b: 20\).*pass SOLVER.MAX_ITER VALUE"
    with pytest.raises(ValueError, match=message):
        prepare_comparison(str(output_dir), [a, b], 2, train_script=fake_train_script)
    assert not output_dir.exists()  # nothing written before every check passed
    sweeps = prepare_comparison(
        str(output_dir),
        [a, b],
        2,
        overrides=["SOLVER.MAX_ITER", "5"],
        train_script=fake_train_script,
    )
    assert [s.label for s in sweeps] == ["a", "b"]
    assert load_manifest(str(output_dir / "b")).overrides == [("SOLVER.MAX_ITER", "5")]
    c = yaml_file(tmp_path, "c.yaml", "DATASETS:\n  TRAIN: ('ytvis_2019_train',)\n")
    with pytest.raises(ValueError, match="DATASETS.TRAIN"):
        prepare_comparison(
            str(tmp_path / "cmp2"),
            [a, c],
            1,
            overrides=["SOLVER.MAX_ITER", "5"],
            train_script=fake_train_script,
        )


def test_a_bad_override_or_config_is_named(tmp_path, fake_train_script):
    a = yaml_file(tmp_path, "a.yaml", "")
    b = yaml_file(tmp_path, "b.yaml", "")
    with pytest.raises(ValueError, match="MODEL.IFR.LAMBDA_F does not exist"):
        prepare_comparison(
            str(tmp_path / "c"),
            [a, b],
            1,
            overrides=["MODEL.IFR.LAMBDA_F", "1"],
            train_script=fake_train_script,
        )
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        prepare_comparison(
            str(tmp_path / "c"), [a, str(tmp_path / "nope.yaml")], 1, train_script=fake_train_script
        )
    assert not (tmp_path / "c").exists()


# --- through a fake training script ------------------------------------------------------


@pytest.fixture
def two_configs(tmp_path, yaml_fake_train_script):
    configs = [
        yaml_file(tmp_path, f"{name}.yaml", f"MODEL:\n  IFR:\n    LAMBDA_E: {lam}\n")
        for name, lam in (("ifr_a", 0.0), ("ifr_b", 0.5))
    ]
    return configs, yaml_fake_train_script


def calls(run_dir):
    with open(os.path.join(run_dir, "calls.txt")) as f:
        return f.read().splitlines()


def test_compare_tool_fails_one_run_resumes_it_and_tabulates(
    tmp_path, two_configs, fake_metrics, monkeypatch, capsys, load_tool
):
    configs, script = two_configs
    compare = load_tool("compare")
    output_dir = str(tmp_path / "cmp")
    argv = [
        "--configs",
        *configs,
        "--seeds",
        "2",
        "--output-dir",
        output_dir,
        "--train-script",
        script,
        "SOLVER.MAX_ITER",
        "5",
    ]
    monkeypatch.setenv("FAKE_CRASH_RUN", "0.0/1")  # config ifr_a, seed 1
    assert compare.main(argv) == 1
    captured = capsys.readouterr()
    assert "[3/4] ifr_a seed=1: FAILED (exit code 3" in captured.out
    assert "[4/4] ifr_b seed=1: done" in captured.out  # the next run still trained
    assert "Comparison: 3/4 runs finished, 1 failed" in captured.out
    assert "1 runs failed (ifr_a/seed=1)" in captured.err
    table = open(os.path.join(output_dir, "table.md")).read()
    assert "| ifr_a | 1/2 | 40.0 ± - (1) |" in table  # AP 40 + 10 * 0.0 + seed 0
    assert load_manifest(os.path.join(output_dir, "ifr_a")).runs["seed=1"].state == FAILED
    os.remove(os.path.join(output_dir, "table.md"))
    assert compare.main(["--table-only", *argv]) == 0  # tabulates, trains nothing
    assert "| ifr_a | 1/2 | 40.0 ± - (1) |" in open(os.path.join(output_dir, "table.md")).read()
    # The runs' own manifests decide what is tabulated: no overrides needed.
    table_only = ["--table-only", "--configs", *configs, "--output-dir", output_dir]
    assert compare.main(table_only) == 0
    assert "| ifr_a | 1/2 | 40.0 ± - (1) |" in open(os.path.join(output_dir, "table.md")).read()
    assert calls(os.path.join(output_dir, "ifr_a", "seed=1")) == [
        "resume=True had_checkpoint=False"
    ]
    capsys.readouterr()

    monkeypatch.delenv("FAKE_CRASH_RUN")
    assert compare.main(argv) == 0
    out = capsys.readouterr().out
    assert "ifr_a: 2 runs in " in out and "1 finished, 1 to run" in out
    assert calls(os.path.join(output_dir, "ifr_a", "seed=0")) == [
        "resume=True had_checkpoint=False"
    ]  # finished: not run again
    assert calls(os.path.join(output_dir, "ifr_a", "seed=1")) == [
        "resume=True had_checkpoint=False",
        "resume=True had_checkpoint=True",
    ]
    assert load_manifest(os.path.join(output_dir, "ifr_a")).runs["seed=1"].state == DONE
    with open(os.path.join(output_dir, "table.csv")) as f:
        rows = list(csv.DictReader(f))
    for row, lam in zip(rows, (0.0, 0.5)):
        for metric in ("AP", "AP50", "AR10"):
            values = [fake_metrics(lam, seed)[metric] for seed in (0, 1)]
            assert float(row[f"{metric}_mean"]) == pytest.approx(np.mean(values))
            assert float(row[f"{metric}_std"]) == pytest.approx(np.std(values, ddof=1))


def test_compare_tool_dry_run_and_argument_errors(tmp_path, two_configs, capsys, load_tool):
    configs, script = two_configs
    compare = load_tool("compare")
    output_dir = tmp_path / "cmp"
    base = ["--seeds", "2", "--output-dir", str(output_dir), "--train-script", script]
    assert compare.main(["--configs", *configs, *base, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Dry run: 4 runs to train" in out and out.count("--config-file") == 4
    assert not output_dir.exists()
    # Overrides swallowed by --configs: named, with where they belong.
    assert compare.main([*base, "--configs", *configs, "SOLVER.MAX_ITER", "5"]) == 1
    assert "--configs SOLVER.MAX_ITER: not a .yaml file" in capsys.readouterr().err
    assert compare.main(["--configs", configs[0], *base]) == 1
    assert "at least two configs" in capsys.readouterr().err
    assert compare.main(["--configs", *configs, *base, "--table-only"]) == 1
    err = capsys.readouterr().err
    assert "no comparison of ifr_a in" in err and not output_dir.exists()


def test_runs_go_seed_by_seed_across_the_configs(tmp_path, two_configs):
    """A comparison stopped early has as many runs of every config."""
    configs, script = two_configs
    sweeps = prepare_comparison(str(tmp_path / "cmp"), configs, 2, train_script=script)
    lines = []
    assert run_comparison(sweeps, echo=lines.append) == {"ifr_a": [], "ifr_b": []}
    running = [line.split(": running")[0] for line in lines if ": running" in line]
    assert running == [
        "[1/4] ifr_a seed=0",
        "[2/4] ifr_b seed=0",
        "[3/4] ifr_a seed=1",
        "[4/4] ifr_b seed=1",
    ]
