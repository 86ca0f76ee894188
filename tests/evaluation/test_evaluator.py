import json
import os
import uuid

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from ytvis_factory import PERFECT_TRACKING, box, make_gt

from ifr.evaluation import YTVISEvaluator, load_results

H, W = 16, 16
TRACK_1 = [box(H, W, 0, 6, 0, 6), box(H, W, 1, 7, 1, 7), None]
TRACK_2 = [box(H, W, 8, 16, 8, 16), box(H, W, 8, 16, 8, 16)]


@pytest.fixture
def register(tmp_path):
    """Registers a dataset of two videos (ids 3: 3 frames, 5: 2 frames), category ids 10
    and 20 (contiguous 0 and 1); with_gt=False drops the annotations (a test split)."""
    names = []

    def _register(with_gt=True):
        gt = make_gt(
            [(3, H, W, 3), (5, H, W, 2)], [(3, 20, TRACK_1), (5, 10, TRACK_2)], categories=(10, 20)
        )
        if not with_gt:
            del gt["annotations"]
        json_file = tmp_path / f"gt_{len(names)}.json"
        json_file.write_text(json.dumps(gt))
        name = f"test_ytvis_evaluator_{uuid.uuid4().hex}"
        dicts = [{"video_id": v["id"], "length": v["length"]} for v in gt["videos"]]
        DatasetCatalog.register(name, lambda: dicts)
        MetadataCatalog.get(name).set(
            json_file=str(json_file), thing_dataset_id_to_contiguous_id={10: 0, 20: 1}
        )
        names.append(name)
        return name

    yield _register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _output(track, label, score=0.9):
    masks = np.stack([np.zeros((H, W), bool) if m is None else m for m in track])
    return {
        "image_size": (H, W),
        "pred_scores": [score],
        "pred_labels": [label],
        "pred_masks": [masks],
    }


def _evaluator(name, **kwargs):
    return YTVISEvaluator(name, tracking_score_threshold=0.5, **kwargs)


def _run(evaluator, videos):
    evaluator.reset()
    for video_id, length, output in videos:
        evaluator.process([{"video_id": video_id, "length": length}], [output])
    return evaluator.evaluate()


def test_perfect_outputs_give_perfect_metrics_and_write_results(register, tmp_path):
    out_dir = tmp_path / "inference"
    evaluator = _evaluator(register(), output_dir=str(out_dir))
    metrics = _run(evaluator, [(3, 3, _output(TRACK_1, 1)), (5, 2, _output(TRACK_2, 0))])
    assert list(metrics) == ["segm", "tracking"]
    assert metrics["segm"]["AP"] == pytest.approx(100.0)
    assert metrics["segm"]["AR1"] == pytest.approx(100.0)
    assert metrics["tracking"] == PERFECT_TRACKING
    results = load_results(str(out_dir / "results.zip"))
    assert [(r["video_id"], r["category_id"]) for r in results] == [(3, 20), (5, 10)]
    assert results[0]["segmentations"][2] is None


def test_wrong_class_lowers_ap(register):
    evaluator = _evaluator(register(), tracking=False)
    videos = [(3, 3, _output(TRACK_1, 0, score=0.8)), (5, 2, _output(TRACK_2, 0, score=0.9))]
    metrics = _run(evaluator, videos)
    assert list(metrics) == ["segm"]
    # Category 10: TP (0.9) then FP (0.8): AP 1; category 20: its GT missed: AP 0.
    assert metrics["segm"]["AP"] == pytest.approx(50.0)


def test_no_ground_truth_writes_results_without_metrics(register, tmp_path):
    out_dir = tmp_path / "test_split"
    evaluator = _evaluator(register(with_gt=False), output_dir=str(out_dir))
    metrics = _run(evaluator, [(3, 3, _output(TRACK_1, 1)), (5, 2, _output(TRACK_2, 0))])
    assert metrics == {}
    assert len(load_results(str(out_dir / "results.json"))) == 2
    assert os.path.isfile(out_dir / "results.zip")


def test_missing_video_is_an_error_unless_allowed(register):
    name = register()
    with pytest.raises(ValueError, match=r"1 of 2 videos were not processed, e.g. video ids \[5\]"):
        _run(_evaluator(name), [(3, 3, _output(TRACK_1, 1))])
    metrics = _run(_evaluator(name, allow_missing_videos=True), [(3, 3, _output(TRACK_1, 1))])
    assert metrics["segm"]["AP"] == pytest.approx(100.0)  # video 5's GT is not counted


def test_bad_outputs_are_errors(register):
    evaluator = _evaluator(register())
    with pytest.raises(ValueError, match="video 5: the output has 3 frames, the video has 2"):
        evaluator.process([{"video_id": 5, "length": 2}], [_output(TRACK_1, 0)])
    with pytest.raises(ValueError, match="videos processed twice: \\[3\\]"):
        _run(evaluator, [(3, 3, _output(TRACK_1, 1))] * 2 + [(5, 2, _output(TRACK_2, 0))])


def test_config_sets_the_tracking_score_threshold(register, make_cfg):
    cfg = make_cfg()
    assert cfg.TEST.TRACKING_SCORE_THRESHOLD == 0.5
    cfg.TEST.TRACKING_SCORE_THRESHOLD = 0.95  # above the outputs' 0.9: none is kept
    evaluator = YTVISEvaluator(cfg, register())
    metrics = _run(evaluator, [(3, 3, _output(TRACK_1, 1)), (5, 2, _output(TRACK_2, 0))])
    assert metrics["segm"]["AP"] == pytest.approx(100.0)  # AP does not use the threshold
    assert metrics["tracking"]["MOTA"] == 0.0 and metrics["tracking"]["IDP"] == -1.0


def test_malformed_ground_truth_is_named(register, tmp_path):
    name = register()
    json_file = MetadataCatalog.get(name).json_file
    gt = json.loads(open(json_file).read())
    gt["annotations"][1]["id"] = gt["annotations"][0]["id"]
    with open(json_file, "w") as f:
        json.dump(gt, f)
    with pytest.raises(
        ValueError, match=f"{json_file}: video 5, annotation 1: annotation id 1 appears twice"
    ):
        _run(_evaluator(name), [(3, 3, _output(TRACK_1, 1)), (5, 2, _output(TRACK_2, 0))])


def test_own_threshold_adds_the_tracking_metrics_at_it(register):
    outputs = [(3, 3, _output(TRACK_1, 1, score=0.9)), (5, 2, _output(TRACK_2, 0, score=0.6))]
    metrics = _run(_evaluator(register(), own_threshold=0.3), outputs)
    assert list(metrics) == ["segm", "tracking", "tracking_own"]
    assert metrics["tracking_own"] == {f"{k}_own": v for k, v in PERFECT_TRACKING.items()} | {
        "threshold_own": 0.3
    }
    # At 0.7 the second video's track (0.6) is cut: 2 of the 4 ground-truth boxes found.
    own = _run(_evaluator(register(), own_threshold=0.7), outputs)["tracking_own"]
    assert own["IDR_own"] == pytest.approx(100 * 2 / 4) and own["IDP_own"] == 100.0
    assert "tracking_own" not in _run(_evaluator(register()), outputs)
