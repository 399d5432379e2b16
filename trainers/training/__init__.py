"""Training: ``loop.py`` -- ``Phase``, ``run_phase`` (one loop for every phase: checkpoints,
resume, NaN checks); ``phases.py`` -- ``warmup_phase``, ``finetune_phase``, ``pruning_phase``,
``accuracy``, ``steps_for``; ``retrieval.py`` -- the retrieval warm-up's head and loss."""
