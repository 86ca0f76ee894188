"""``YTVISEvaluator``: Detectron2's ``DatasetEvaluator`` for YouTube-VIS-format datasets."""

import itertools
import logging
from collections import Counter, OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Sequence

from detectron2.config import configurable
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.logger import log_every_n_seconds
from tabulate import tabulate

from ..utils.json_io import read_json
from .results_io import instances_to_ytvis_results, parse_results, write_results
from .tracking import tracking_metrics
from .tracks import GroundTruth, has_annotations, parse_ground_truth
from .ytvis_eval import ytvis_metrics

logger = logging.getLogger(__name__)


class YTVISEvaluator(DatasetEvaluator):
    """Collects per-video predictions as YouTube-VIS result entries, writes ``results.json``
    and ``results.zip`` (what the evaluation server takes) and, when the dataset's json has
    ground truth, computes AP/AR (``"segm"``) and the MOT metrics (``"tracking"``).

    Each video's output is turned into RLE entries as soon as it arrives, so memory grows
    with the number of predictions, not with the number of mask pixels.
    """

    @configurable
    def __init__(
        self,
        dataset_name: str,
        *,
        tracking_score_threshold: float,
        output_dir: Optional[str] = None,
        distributed: bool = True,
        tracking: bool = True,
        allow_missing_videos: bool = False,
        own_threshold: Optional[float] = None,
    ):
        """
        Args:
            dataset_name: a dataset registered in ``DatasetCatalog``; its metadata needs
                ``thing_dataset_id_to_contiguous_id`` and, for metrics, ``json_file``.
            output_dir: where ``results.json`` and ``results.zip`` go (nothing is written
                when ``None``).
            distributed: gather the results of all processes on the main one.
            tracking: also compute the MOT metrics (paper, Table 3).
            tracking_score_threshold: predictions scored below do not take part in the MOT
                metrics (``TEST.TRACKING_SCORE_THRESHOLD``; see
                :mod:`ifr.evaluation.tracking`).
            allow_missing_videos: evaluate even when some videos of the dataset were not
                processed (a run cut short on purpose); the metrics are then those of the
                processed videos only. By default a missing video is an error.
            own_threshold: the model's own tracking score threshold (chosen on a tune
                split, ``TEST.TRACKING_TUNE_DATASET``): the tracking metrics are also
                computed at it (``"tracking_own"``: ``IDF1_own, ..., threshold_own``).
        """
        self._dataset_name = dataset_name
        self._output_dir = output_dir
        self._distributed = distributed
        self._tracking = tracking
        self._tracking_score_threshold = tracking_score_threshold
        self._allow_missing_videos = allow_missing_videos
        self._own_threshold = own_threshold
        self._metadata = MetadataCatalog.get(dataset_name)
        self._contiguous_to_dataset_id: Optional[Dict[int, int]] = None
        self._dataset_video_ids: Optional[List[int]] = None
        self.reset()

    @classmethod
    def from_config(
        cls,
        cfg,
        dataset_name: str,
        output_dir: Optional[str] = None,
        distributed: bool = True,
        own_threshold: Optional[float] = None,
    ) -> Dict[str, Any]:
        return {
            "dataset_name": dataset_name,
            "output_dir": output_dir,
            "distributed": distributed,
            "tracking_score_threshold": cfg.TEST.TRACKING_SCORE_THRESHOLD,
            "own_threshold": own_threshold,
        }

    def reset(self) -> None:
        self._results: List[Dict[str, Any]] = []
        self._video_ids: List[int] = []

    def process(self, inputs: Sequence[Mapping[str, Any]], outputs: Any) -> None:
        """
        Args:
            inputs: the test mapper's dicts, one per video (``video_id``, ``length``).
            outputs: the model's per-video outputs (docs/design.md), a list matching
                ``inputs``, or one dict when there is one input.
        """
        if isinstance(outputs, Mapping):
            outputs = [outputs]
        if len(outputs) != len(inputs):
            raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
        for video, output in zip(inputs, outputs):
            video_id = video["video_id"]
            entries = instances_to_ytvis_results(video_id, output, self._category_id_map())
            for entry in entries:
                if len(entry["segmentations"]) != video["length"]:
                    raise ValueError(
                        f"video {video_id}: the output has {len(entry['segmentations'])} "
                        f"frames, the video has {video['length']}"
                    )
            self._results.extend(entries)
            self._video_ids.append(video_id)
        log_every_n_seconds(
            logging.INFO,
            f"YTVISEvaluator: {len(self._video_ids)} videos done in this process "
            f"({self._num_dataset_videos()} in {self._dataset_name}, over "
            f"{comm.get_world_size()} process(es))",
            n=30,
        )

    def evaluate(self) -> "OrderedDict[str, Dict[str, float]]":
        """Write the results and return ``{"segm": {AP...}, "tracking": {IDF1...}}``
        (empty on non-main processes and when the dataset has no ground truth)."""
        results, video_ids = self._gather()
        if results is None:
            return OrderedDict()
        self._check_videos(video_ids)
        zip_path = "nowhere (no output_dir given)"
        if self._output_dir:
            _, zip_path = write_results(results, self._output_dir)
        gt = self._load_ground_truth()
        if gt is None:
            logger.info(
                f"{self._dataset_name} has no ground truth: no metrics. "
                f"Results for the evaluation server were written to {zip_path}"
            )
            return OrderedDict()
        gt = gt.restrict(video_ids)
        predictions = parse_results(results, gt, source=f"{self._dataset_name} outputs")
        metrics = OrderedDict(segm=ytvis_metrics(gt, predictions))
        if self._tracking:
            metrics["tracking"] = tracking_metrics(
                gt, predictions, score_threshold=self._tracking_score_threshold
            )
        if self._tracking and self._own_threshold is not None:
            own = tracking_metrics(gt, predictions, score_threshold=self._own_threshold)
            metrics["tracking_own"] = OrderedDict(
                [(f"{k}_own", v) for k, v in own.items()] + [("threshold_own", self._own_threshold)]
            )
        self._log_metrics(metrics)
        return metrics

    def _gather(self):
        if not self._distributed:
            return list(self._results), list(self._video_ids)
        comm.synchronize()
        results = comm.gather(self._results, dst=0)
        video_ids = comm.gather(self._video_ids, dst=0)
        if not comm.is_main_process():
            return None, None
        return list(itertools.chain(*results)), list(itertools.chain(*video_ids))

    def _category_id_map(self) -> Dict[int, int]:
        """contiguous class -> dataset category id. The dataset loader stores the mapping in
        the metadata when it first loads the json, so load the dataset if it is not there."""
        if self._contiguous_to_dataset_id is None:
            if not hasattr(self._metadata, "thing_dataset_id_to_contiguous_id"):
                self._expected_video_ids()
            self._contiguous_to_dataset_id = _contiguous_to_dataset_id(
                self._metadata, self._dataset_name
            )
        return self._contiguous_to_dataset_id

    def _num_dataset_videos(self) -> int:
        return len(self._expected_video_ids())

    def _expected_video_ids(self) -> List[int]:
        if self._dataset_video_ids is None:
            dicts = DatasetCatalog.get(self._dataset_name)
            self._dataset_video_ids = [d["video_id"] for d in dicts]
        return self._dataset_video_ids

    def _check_videos(self, video_ids: List[int]) -> None:
        duplicates = sorted(v for v, n in Counter(video_ids).items() if n > 1)
        if duplicates:
            raise ValueError(f"{self._dataset_name}: videos processed twice: {duplicates[:20]}")
        expected = set(self._expected_video_ids())
        unknown = sorted(set(video_ids) - expected)
        if unknown:
            raise ValueError(f"{self._dataset_name}: processed videos not in it: {unknown[:20]}")
        missing = sorted(expected - set(video_ids))
        if not missing:
            return
        message = (
            f"{self._dataset_name}: {len(missing)} of {len(expected)} videos were not "
            f"processed, e.g. video ids {missing[:20]}"
        )
        if not self._allow_missing_videos:
            raise ValueError(message + " (allow_missing_videos=True evaluates the rest)")
        logger.warning(message + "; the metrics cover the processed videos only")

    def _load_ground_truth(self) -> Optional[GroundTruth]:
        json_file = getattr(self._metadata, "json_file", None)
        if not json_file:
            logger.warning(f"{self._dataset_name} has no json_file in its metadata")
            return None
        gt = read_json(json_file, "ground-truth file")
        return parse_ground_truth(gt, source=json_file) if has_annotations(gt) else None

    def _log_metrics(self, metrics: Mapping[str, Mapping[str, float]]) -> None:
        for task, values in metrics.items():
            table = tabulate([list(values.values())], headers=list(values), floatfmt=".2f")
            condition = {
                "tracking": f" (predictions scored >= {self._tracking_score_threshold})",
                "tracking_own": f" at the model's own threshold ({self._own_threshold}, "
                "best IDF1 on the tune split)",
            }.get(task, "")
            logger.info(f"{self._dataset_name} {task} metrics{condition}:\n{table}")


def _contiguous_to_dataset_id(metadata, dataset_name: str) -> Dict[int, int]:
    mapping = getattr(metadata, "thing_dataset_id_to_contiguous_id", None)
    if mapping is None:
        raise ValueError(
            f"{dataset_name}: metadata has no thing_dataset_id_to_contiguous_id; "
            "register the dataset with ifr.data (register_ytvis_instances)"
        )
    return {contiguous: dataset_id for dataset_id, contiguous in mapping.items()}
