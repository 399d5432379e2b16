"""One (N, s) training, in cached stages.

- ``run.py``: ``TrialSpec``, ``run_trial`` (the stages in order), ``warm_up``;
- ``stages.py``: ``Stage``, ``RunningTrial`` (what a stage's build sees), ``cached_stage``;
- ``services.py``: ``TrialServices``, the data, engine, timer and phases a stage's build uses
  (the runner's side of ``RunningTrial``);
- ``warmup_stage.py``, ``teacher_stage.py``, ``pruned_stage.py``: each stage's build;
- ``cache_keys.py``: the key and folder of each stage's artifact; ``artifacts.py``: a folder
  built once under a file lock;
- ``task_data.py``: the study's task, encoded once per process;
- ``model_result.py``, ``trial_results.py``: ``TrialResult``, what a trial reports (a trained
  model's throughput, its folder described, its dev figure in each serving precision).
"""
