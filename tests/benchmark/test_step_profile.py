"""ifr.benchmark.step_profile: the stage timer, and a profiled step of the tiny trainer."""

import os

import pytest

from ifr.benchmark.step_profile import StageTimer, breakdown_rows, profile_training_step


def test_stage_timer_accumulates_time_inside_wrapped_calls_even_when_they_raise():
    ticks = iter([0.0, 2.0, 10.0, 13.0])  # a fake clock: two calls of 2 s and 3 s
    timer = StageTimer(lambda: next(ticks))

    class Owner:
        def work(self, fail=False):
            if fail:
                raise RuntimeError("boom")
            return "done"

    owner = Owner()
    timer.patch(owner, "work", "stage")
    assert owner.work() == "done"
    with pytest.raises(RuntimeError):
        owner.work(fail=True)
    assert timer.totals == {"stage": 5.0}


def test_breakdown_rows_are_in_pipeline_order_with_shares_of_the_median_step():
    result = {
        "step_s": [0.4, 0.5, 0.6],
        "stages": {"backward": 0.2, "forward: backbone": 0.05, "forward (all)": 0.25},
    }
    rows = breakdown_rows(result)
    assert [name for name, _, _ in rows] == ["forward (all)", "forward: backbone", "backward"]
    assert rows[0][1] == pytest.approx(250.0) and rows[0][2] == pytest.approx(50.0)


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_profiled_steps_of_the_tiny_trainer_time_every_stage(tmp_path, make_cfg):
    from ifr.engine.trainer import Trainer

    cfg = make_cfg(
        os.path.join(ROOT, "configs", "tiny", "ifr_tiny.yaml"),
        ["OUTPUT_DIR", str(tmp_path), "SOLVER.IMS_PER_BATCH", "1", "MODEL.VIS.DEC_LAYERS", "1"],
    )
    result = profile_training_step(Trainer(cfg), iters=2, warmup=0, synthetic_size=(32, 32))
    stages = result["stages"]
    assert len(result["step_s"]) == 2
    for stage in [
        "forward: backbone",
        "criterion: matcher",
        "backward",
        "data (loader and mapper)",
    ]:
        assert stages[stage] >= 0
    assert stages["optimizer step (with clipping)"] > 0
    nested = stages["forward: backbone"] + stages["forward: criterion (all)"]
    assert nested <= stages["forward (all)"] <= max(result["step_s"]) * 1.01
