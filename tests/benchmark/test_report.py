"""The device report (``tools/benchmark.py --report gpu``) on CPU at small sizes: every
section runs and writes its rows, a failing section records its error while the others
run, the time budget skips rows, the aims are computed from the rows, the JSON is valid
and the command prints the tables."""

import json
import math

import pytest

from ifr.benchmark import report as report_module
from ifr.benchmark.report import SECTIONS, check_aims, markdown, run_report

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_small_report_runs_every_section_on_cpu(tmp_path):
    output = tmp_path / "report.json"
    data = run_report("cpu", small=True, output=str(output), budget_s=600)
    saved = json.loads(output.read_text())  # strict JSON (NaN written as null)
    assert saved["meta"]["device"] == "cpu" and saved["meta"]["small"] is True
    for name in SECTIONS:
        section = saved["sections"][name]
        assert section["error"] is None, (name, section["error"])
        assert section["rows"] and not any("skipped" in r for r in section["rows"]), name
    msda = saved["sections"]["msda"]["rows"]
    assert {(r["precision"], r["impl"]) for r in msda} == {("fp32", "pytorch"), ("bf16", "pytorch")}
    assert all(r["fwd_bwd_ms"] > 0 and r["peak_mib"] is None for r in msda)  # no CUDA here
    train = saved["sections"]["train"]["rows"]
    assert [(r["model"], r["precision"]) for r in train] == [
        ("IFR tiny", "bf16"),
        ("Mask2Former-VIS tiny", "bf16"),
        ("IFR tiny", "fp32"),
        ("Mask2Former-VIS tiny", "fp32"),
    ]
    ratio = saved["train_ratio"][0]
    assert ratio["precision"] == "bf16"
    assert math.isclose(ratio["step time IFR / M2F-VIS"], train[0]["step_ms"] / train[1]["step_ms"])
    memory = saved["sections"]["memory"]["rows"]
    assert [r["frames"] for r in memory] == [2, 4]
    assert all(r["feature storage"] == "cpu" and r["peak_mib"] >= 0 for r in memory)
    assert saved["sections"]["frame_step"]["rows"][0]["ms_per_step"] > 0
    # The aims need the full sizes' GPU rows: none is met or failed on a small CPU run.
    assert [a["met"] for a in saved["aims"]] == [None] * 5
    text = markdown(data)
    assert "### msda" in text and "| IFR tiny" in text and "### aims" in text


def test_a_failing_section_records_its_error_and_the_others_run(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no kernel for this GPU\nsecond line")

    monkeypatch.setattr(report_module, "benchmark_msda", broken)
    output = tmp_path / "report.json"
    run_report("cpu", small=True, output=str(output), sections=["msda", "memory"])
    saved = json.loads(output.read_text())
    assert saved["sections"]["msda"]["error"] == "RuntimeError: no kernel for this GPU"
    assert saved["sections"]["msda"]["rows"] == []
    assert saved["sections"]["memory"]["error"] is None
    assert len(saved["sections"]["memory"]["rows"]) == 2


def test_spent_budget_skips_rows_but_still_writes_the_report(tmp_path):
    output = tmp_path / "report.json"
    run_report("cpu", small=True, output=str(output), budget_s=0, sections=["train", "memory"])
    saved = json.loads(output.read_text())
    rows = saved["sections"]["train"]["rows"] + saved["sections"]["memory"]["rows"]
    assert len(rows) == 6 and all(r["skipped"].startswith("time budget (0 s)") for r in rows)


def test_unknown_section_and_missing_cuda_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown \\['msdaa'\\]"):
        run_report("cpu", small=True, sections=["msdaa"])
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            run_report("cuda", small=True, sections=["msda"])


def _data(device="cuda:0", **sections):
    return {"meta": {"device": device}, "sections": {k: {"rows": v} for k, v in sections.items()}}


def test_aims_from_hand_made_rows():
    """Figures chosen so that every aim's arithmetic can be checked by hand."""
    data = _data(
        msda=[
            {
                "case": "big",
                "precision": "bf16",
                "impl": "pytorch",
                "fwd_bwd_ms": 9.0,
                "peak_mib": 1000.0,
            },
            {
                "case": "big",
                "precision": "bf16",
                "impl": "triton",
                "fwd_bwd_ms": 3.0,
                "peak_mib": 600.0,
            },
        ],
        inference=[
            {"size": "360p", "precision": "bf16", "frames_per_s": 50.0},
            {"size": "360p", "precision": "bf16", "frames_per_s": 70.0},
            {"size": "720p", "precision": "bf16", "frames_per_s": 90.0},  # other size
            {"size": "360p", "precision": "fp32", "frames_per_s": 95.0},  # other precision
        ],
        memory=[{"frames": 1000, "precision": "bf16", "peak_mib": 9216.0}],
        train=[
            {"model": "IFR-R50", "precision": "bf16", "step_ms": 300.0},
            {"model": "Mask2Former-VIS R50", "precision": "bf16", "step_ms": 400.0},
        ],
    )
    aims = check_aims(data)
    assert [a["value"] for a in aims] == [3.0, 0.6, 70.0, 9.0, 0.75]
    assert [a["met"] for a in aims] == [True, False, True, False, True]
    data["meta"]["device"] = "cpu"  # the aims are a GPU's: not judged on CPU figures
    assert [a["met"] for a in check_aims(data)] == [None] * 5


def test_aims_ignore_skipped_rows():
    data = _data(memory=[{"frames": 1000, "precision": "bf16", "skipped": "time budget"}])
    assert check_aims(data)[3]["met"] is None


def test_command_line_writes_json_and_prints_tables(tmp_path, capsys, load_tool):
    output = tmp_path / "out.json"
    load_tool("benchmark").main(
        [
            "--report",
            "gpu",
            "--device",
            "cpu",
            "--small",
            "--sections",
            "msda",
            "--output",
            str(output),
        ]
    )
    printed = capsys.readouterr().out
    assert "[msda] case=32x48, precision=fp32, impl=pytorch" in printed  # progress lines
    assert "| case   | precision   | impl    |" in printed
    assert json.loads(output.read_text())["sections"]["msda"]["rows"]


def test_command_line_refuses_overrides_with_report(load_tool):
    with pytest.raises(ValueError, match="--report takes no config overrides"):
        load_tool("benchmark").main(["--report", "gpu", "--small", "MODEL.VIS.NUM_QUERIES", "5"])
    with pytest.raises(ValueError, match="--config-file is required"):
        load_tool("benchmark").main([])
