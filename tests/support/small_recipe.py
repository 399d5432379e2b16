"""A training recipe of few steps on small batches, for tests that price trainings or that
need a recipe for the proposer to count a teacher another training builds as free."""

from autoprumux.loop.costs import Recipe

SMALL_RECIPE = Recipe(
    warmup_steps_per_instance=10,
    warmup_mlm_steps=5,
    warmup_rows=2,
    warmup_length_ratio=0.5,
    finetune_steps=20,
    finetune_epochs=0.0,
    pruning_steps=10,
    pruning_epochs=0.0,
    post_pruning_steps=5,
    post_pruning_epochs=0.0,
    batch_rows=4,
    train_examples=1000,
    distill_from_n1=True,
    needs_warmup=True,
)
