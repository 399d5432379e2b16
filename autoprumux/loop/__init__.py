"""The search loop: the driver (propose, train, record), the proposer and its cost model, the
study store that is its source of truth, the local and Ray executors, and where a trial's
measurements come from (real training or a replayed grid).

- contracts: ``store_contract.py`` (``StudyStore``, what the driver, the session and the
  report need of a study's storage; ``StudySnapshot``, ``LiveTrial``, ``Abandoned``) and
  ``trainer_contract.py`` (``Trainer``, ``TrainFunction``, ``WorkerPaths``);
- the loop: ``driver.py`` (``SearchDriver``, ``SearchConfig``, ``StopReason``, ``run_local``),
  ``proposer.py``, ``costs.py``;
- the Optuna store: ``optuna_store.py`` (``OptunaStore``: a trial's life and its lease),
  ``trial_mapping.py`` (a record as an Optuna trial and back), ``study_storage.py`` (opening
  and checking the storage and its study; ``retry_busy``), ``trial_owner.py`` (owners and
  leases), ``storage_check.py`` and ``masking.py`` (a URL checked, a password masked);
- executors and trainers: ``ray_executor.py`` (Ray Tune), ``ray_auth.py``,
  ``trial_sources.py`` (``StudyTrainer``, ``ReplayTrainer``), ``device_slots.py`` (which GPU
  a local trial goes to) and ``trial_process.py`` (one local GPU trial per spawned process).
"""
