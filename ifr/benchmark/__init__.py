"""Speed and memory measurement: training and inference throughput and peak memory
(``measure``), the GPU device report (``report``), and the per-stage profile of a
training step (``step_profile``). ``tools/benchmark.py`` and ``tools/profile_train_step.py``
are their command lines."""
