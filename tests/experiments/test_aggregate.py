import csv
import json
import os

import numpy as np
import pytest

from ifr.experiments.aggregate import aggregate_sweep, read_final_metrics, summarize
from ifr.experiments.grid import SweepParam, expand_grid
from ifr.experiments.manifest import SweepManifest, save_manifest
from ifr.experiments.plot import build_summary_figure, numeric_value
from ifr.experiments.summary import MetricStats, format_stats, mean_std

LAMBDA = "MODEL.IFR.LAMBDA_E"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_sweep(sweep_dir, params, seeds, metrics_of, skip=()):
    """A sweep folder as tools/sweep.py leaves it; ``metrics_of(setting, seed)`` gives a
    run's final_metrics.json, runs in ``skip`` are unfinished."""
    runs = expand_grid(params, seeds)
    save_manifest(SweepManifest.create("/c.yaml", "/t.py", params, seeds, [], runs), sweep_dir)
    for run in runs:
        os.makedirs(os.path.join(sweep_dir, run.name), exist_ok=True)
        if run.name not in skip:
            with open(os.path.join(sweep_dir, run.name, "final_metrics.json"), "w") as f:
                json.dump(metrics_of(run.setting_dict, run.seed), f)


def lambda_metrics(setting, seed):
    lam = float(setting[LAMBDA])
    return {
        "AP": 40 + 10 * lam + seed**2,
        "AP50": 60 - seed,
        "AP75": 45.0 + lam,
        "AR1": 30 + seed * lam,
        "AR10": 50.0,
        "APs": 1.0,
    }


@pytest.fixture
def lambda_sweep(tmp_path):
    sweep_dir = str(tmp_path / "sweep")
    params = [SweepParam(LAMBDA, ("0.0", "0.3", "1.0"))]
    # lambda 1.0 has one finished run out of three.
    skip = {f"{LAMBDA}=1.0/seed=1", f"{LAMBDA}=1.0/seed=2"}
    write_sweep(sweep_dir, params, [0, 1, 2], lambda_metrics, skip)
    return sweep_dir


def test_mean_std_matches_numpy_sample_std():
    stats = mean_std([1.0, 2.0, 4.0])
    assert stats.mean == pytest.approx(7 / 3)
    squares = (1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2
    assert stats.std == pytest.approx(np.sqrt(squares / 2))  # ddof=1: divide by n - 1
    assert mean_std([5.0]).std is None and mean_std([5.0]).n == 1


def test_summary_groups_by_setting(lambda_sweep):
    from ifr.experiments.manifest import load_manifest

    summary = summarize(load_manifest(lambda_sweep), lambda_sweep)
    assert summary.metrics == ["AP", "AP50", "AP75", "AR1", "AR10"]  # APs not by default
    assert [s.setting[LAMBDA] for s in summary.settings] == ["0.0", "0.3", "1.0"]
    assert [s.num_runs for s in summary.settings] == [3, 3, 1]
    for s in summary.settings[:2]:
        for metric in summary.metrics:
            values = [lambda_metrics(s.setting, seed)[metric] for seed in (0, 1, 2)]
            assert s.stats[metric].mean == pytest.approx(np.mean(values))
            assert s.stats[metric].std == pytest.approx(np.std(values, ddof=1))
    single = summary.settings[2].stats["AP"]
    assert (single.mean, single.std, single.n) == (50.0, None, 1)
    missing = sorted(m.name for m in summary.missing)
    assert missing == [f"{LAMBDA}=1.0/seed=1", f"{LAMBDA}=1.0/seed=2"]


def test_aggregate_writes_markdown_csv_and_png(lambda_sweep):
    lines = []
    aggregate_sweep(lambda_sweep, metrics=["AP", "AP50"], echo=lines.append)
    markdown = open(os.path.join(lambda_sweep, "summary.md")).read()
    assert f"| {LAMBDA} | n | AP | AP50 |" in markdown
    # lambda 0.3: AP = 43 + seed^2 -> 43, 44, 47: mean 44.67, std 2.08
    assert "| 0.3 | 3 | 44.7 ± 2.1 (3) | 59.0 ± 1.0 (3) |" in markdown
    assert "| 1.0 | 1 | 50.0 ± - (1) | 60.0 ± - (1) |" in markdown
    assert f"- {LAMBDA}=1.0/seed=1 (pending): " in markdown
    assert markdown in lines

    with open(os.path.join(lambda_sweep, "summary.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r[LAMBDA] for r in rows] == ["0.0", "0.3", "1.0"]
    assert float(rows[1]["AP_mean"]) == pytest.approx(np.mean([43, 44, 47]))
    assert float(rows[1]["AP_std"]) == pytest.approx(np.std([43, 44, 47], ddof=1))
    assert (rows[2]["n"], rows[2]["AP_std"], rows[2]["AP_n"]) == ("1", "", "1")

    with open(os.path.join(lambda_sweep, "summary.png"), "rb") as f:
        assert f.read(8) == PNG_SIGNATURE


def test_figure_has_one_panel_per_metric(lambda_sweep):
    from ifr.experiments.manifest import load_manifest

    summary = summarize(load_manifest(lambda_sweep), lambda_sweep)
    figure = build_summary_figure(summary)
    assert len(figure.axes) == len(summary.metrics) == 5
    ap = figure.axes[0]
    assert ap.get_title() == "AP" and ap.get_xlabel() == LAMBDA
    assert len(ap.containers) == 1  # one errorbar series
    line = ap.containers[0].lines[0]
    x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
    np.testing.assert_allclose(x, [0.0, 0.3, 1.0])  # numeric x axis, at the values
    np.testing.assert_allclose(y, [np.mean([40, 41, 44]), np.mean([43, 44, 47]), 50])


def test_tracking_metrics_are_included_when_present(tmp_path):
    sweep_dir = str(tmp_path / "s")
    write_sweep(
        sweep_dir, [], [0, 1], lambda s, seed: {"AP": 40.0 + seed, "IDF1": 70.0, "IDs": 50 + seed}
    )
    summary = aggregate_sweep(sweep_dir, echo=lambda line: None)
    assert summary.metrics == ["AP", "IDF1", "IDs"]
    assert summary.settings[0].stats["IDs"].mean == 50.5
    assert len(build_summary_figure(summary).axes) == 3


def test_two_swept_keys_need_x_and_draw_one_line_per_other_value(tmp_path):
    sweep_dir = str(tmp_path / "s")
    params = [
        SweepParam(LAMBDA, ("0.0", "0.5")),
        SweepParam("INPUT.MIN_SIZE_TRAIN", ("(360,)", "(480,)")),
    ]
    write_sweep(sweep_dir, params, [0, 1], lambda s, seed: {"AP": float(seed)})
    with pytest.raises(ValueError, match="--x"):
        aggregate_sweep(sweep_dir, echo=lambda line: None)
    assert not os.path.exists(os.path.join(sweep_dir, "summary.md"))  # refused before writing
    summary = aggregate_sweep(sweep_dir, x_key=LAMBDA, echo=lambda line: None)
    written = os.stat(os.path.join(sweep_dir, "summary.md")).st_mtime_ns
    with pytest.raises(ValueError, match="not a swept key"):
        aggregate_sweep(sweep_dir, x_key="SOLVER.BASE_LR", echo=lambda line: None)
    assert os.stat(os.path.join(sweep_dir, "summary.md")).st_mtime_ns == written
    assert len(build_summary_figure(summary, LAMBDA).axes[0].containers) == 2
    with pytest.raises(ValueError, match="not a swept key"):
        build_summary_figure(summary, "SOLVER.BASE_LR")


def test_undefined_minus_one_is_left_out_except_for_mota(tmp_path):
    sweep_dir = str(tmp_path / "s")
    values = {0: {"AP": 40.0, "IDP": -1.0, "MOTA": -1.0}, 1: {"AP": 42.0, "IDP": 80.0, "MOTA": 5.0}}
    write_sweep(sweep_dir, [], [0, 1], lambda s, seed: values[seed])
    summary = aggregate_sweep(sweep_dir, echo=lambda line: None)
    stats = summary.settings[0].stats
    assert (stats["IDP"].mean, stats["IDP"].n) == (80.0, 1)
    assert (stats["MOTA"].mean, stats["MOTA"].n) == (2.0, 2)
    # columns in the default order: AP, MOTA, IDP
    markdown = open(f"{sweep_dir}/summary.md").read()
    assert "| 41.0 ± 1.4 (2) | 2.0 ± 4.2 (2) | 80.0 ± - (1) |" in markdown


def test_errors_name_the_file_or_metric(tmp_path):
    sweep_dir = str(tmp_path / "s")
    write_sweep(sweep_dir, [], [0], lambda s, seed: {"AP": 1.0})
    with pytest.raises(ValueError, match="MOTA"):
        aggregate_sweep(sweep_dir, metrics=["MOTA"], echo=lambda line: None)
    bad = os.path.join(sweep_dir, "seed=0", "final_metrics.json")
    with open(bad, "w") as f:
        f.write("{not json")
    with pytest.raises(
        ValueError, match="final_metrics.json: final metrics file is not valid JSON"
    ):
        read_final_metrics(bad)
    os.remove(bad)
    with pytest.raises(ValueError, match="no finished run"):
        aggregate_sweep(sweep_dir, echo=lambda line: None)


def test_a_truncated_metrics_file_is_listed_not_fatal(lambda_sweep):
    """One truncated final_metrics.json must not abort the whole aggregate."""
    bad = os.path.join(lambda_sweep, f"{LAMBDA}=0.3/seed=2", "final_metrics.json")
    with open(bad) as f:
        text = f.read()
    with open(bad, "w") as f:
        f.write(text[: len(text) // 2])
    summary = aggregate_sweep(lambda_sweep, metrics=["AP"], echo=lambda line: None)
    ap = summary.settings[1].stats["AP"]  # lambda 0.3: seeds 0 and 1 remain, AP 43 and 44
    assert (summary.settings[1].num_runs, ap.n, ap.mean) == (2, 2, 43.5)
    assert ap.std == pytest.approx(np.std([43, 44], ddof=1))
    missing = {m.name: m.state for m in summary.missing}
    assert "not valid JSON" in missing[f"{LAMBDA}=0.3/seed=2"]
    markdown = open(os.path.join(lambda_sweep, "summary.md")).read()
    assert (
        f"- {LAMBDA}=0.3/seed=2 (unreadable: {bad}: final metrics file is not valid JSON"
        in markdown
    )


def test_format_stats_and_numeric_value():
    assert format_stats(mean_std([1.0, 3.0])) == "2.0 ± 1.4 (2)"  # std sqrt(2)
    assert format_stats(MetricStats(46.53, 0.84, 5)) == "46.5 ± 0.8 (5)"
    assert format_stats(MetricStats(46.5, None, 1)) == "46.5 ± - (1)"
    assert format_stats(None) == "-"
    assert numeric_value("0.3") == 0.3 and numeric_value("[1,2]") is None
    assert numeric_value("True") is None and numeric_value("abc") is None


def test_a_metric_that_is_not_a_number_makes_the_run_unreadable(lambda_sweep):
    bad = os.path.join(lambda_sweep, f"{LAMBDA}=0.3/seed=2", "final_metrics.json")
    with open(bad, "w") as f:
        json.dump({"AP": "abc", "AP50": 50.0}, f)
    summary = aggregate_sweep(lambda_sweep, metrics=["AP"], echo=lambda line: None)
    assert summary.settings[1].num_runs == 2  # seeds 0 and 1 only
    missing = {m.name: m.state for m in summary.missing}
    assert "'AP' is 'abc', not a number" in missing[f"{LAMBDA}=0.3/seed=2"]
