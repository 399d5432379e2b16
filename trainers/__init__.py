"""The training engine (torch): multiplexed, prunable transformer classifiers, their training
phases, the trial that builds one (N, s) point, and what serves the result.

Sub-packages, each importing only those listed before it (``tests/test_imports.py``):

- ``runtime``: the device, precision and numerics a run uses (``Engine``, ``Precision``);
- ``data``: a task's splits read, encoded and batched (``Split``, ``Encoded``, ``batches``);
- ``model``: the architecture and its modules -- encoder, multiplexing, classifier, masks -- and
  checkpoints (``Architecture``, ``Classifier``, ``load_pretrained``, ``save_model``);
- ``pruning``: CoFi's L0 gates and the physical shrink (``L0Module``, ``materialize``);
- ``training``: one loop for every phase, the phases, the retrieval warm-up
  (``run_phase``, ``finetune_phase``, ``pruning_phase``, ``warmup_phase``);
- ``deploy``: the model folder, inference, export and timing (``ModelInfo``,
  ``load_text_classifier``, ``export_model``, ``measure``);
- ``trial``: one (N, s) training in cached stages, its cache keys and results (``TrialSpec``,
  ``run_trial``, ``TrialResult``).

Nothing here is imported by the decision core; ``autoprumux.loop`` calls ``run_trial``.
The ``__init__`` modules import nothing, so importing one light module (a model card, a cache
key) does not load torch.
"""
