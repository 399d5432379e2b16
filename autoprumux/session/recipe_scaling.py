"""The task phases of a template study scaled to another data set's size (``autoprumux init``):
as many passes over the new rows as the template makes over its own, at least a few, never more
steps than the template spends."""

from __future__ import annotations

from dataclasses import dataclass

from autoprumux.core.study import TrainingSection

# the task phases whose length is scaled, as [training] names them (<phase>_steps, _epochs);
# the retrieval warm-up is not: it learns to mix N inputs, whatever the task's size
PHASES = ("finetune", "pruning", "lagrangian_warmup", "post_pruning")
# fine-tuning sees the training rows at least this many times (the CPU template spends 0.57
# epochs of SST-2: enough for 67k rows, too few for 5k) ...
MIN_EPOCHS = 3.0
# ... and takes at least this many steps, so a small data set still gets a few hundred
# optimizer updates (at most the template's)
MIN_FINETUNE_STEPS = 300


@dataclass(frozen=True, kw_only=True)
class ScaledRecipe:
    """Each task phase's steps for the data, and the rule in words."""

    steps: dict[str, int]  # phase (PHASES) -> steps
    epochs: float  # the fine-tuning's passes over the training rows
    rule: str  # one line: how the steps were chosen


def scale_recipe(template: TrainingSection, train_rows: int, reference_rows: int) -> ScaledRecipe:
    """The template's task phases scaled to ``train_rows`` training rows. The template's
    fine-tuning on its own ``reference_rows`` (SST-2) is E epochs (its steps, or its epochs);
    the new fine-tuning runs max(E, :data:`MIN_EPOCHS`) epochs of the new rows, but never more
    steps than the template's (what it spends on a training) nor fewer than
    :data:`MIN_FINETUNE_STEPS`; pruning, its Lagrangian warm-up and the post-pruning fine-tuning
    keep their ratio to the fine-tuning."""
    from trainers.training.phases import steps_for  # the engine's rule: steps, else epochs

    batch = template.batch_rows
    reference = {
        phase: steps_for(
            getattr(template, f"{phase}_steps"),
            getattr(template, f"{phase}_epochs"),
            reference_rows,
            batch,
        )
        for phase in PHASES
    }
    most = reference["finetune"]
    epochs = max(most * batch / reference_rows, MIN_EPOCHS)
    wanted = max(1, round(epochs * train_rows / batch))
    least = min(MIN_FINETUNE_STEPS, most)
    finetune = min(max(wanted, least), most)
    ratio = finetune / most
    steps = {phase: max(1, round(reference[phase] * ratio)) for phase in PHASES}
    steps["finetune"] = finetune
    bound = (
        f"capped at the template's {most:,} (what it spends on its {reference_rows:,} rows)"
        if wanted > most
        else f"raised to {least:,}, the fewest it takes"
        if wanted < least
        else f"between {least:,} and the template's {most:,}"
    )
    others = ", ".join(f"{_PHASE_WORDS[p]} {steps[p]:,}" for p in PHASES[1:])
    template_others = ", ".join(f"{reference[p]:,}" for p in PHASES[1:])
    rule = (
        f"about {_number(epochs)} epochs of {train_rows:,} rows at {batch} rows a batch: "
        f"{wanted:,} fine-tuning step{'' if wanted == 1 else 's'}, {bound}: {finetune:,}; "
        f"{others} steps (the template's "
        f"{template_others}, x{ratio:.2f} as the fine-tuning)"
    )
    return ScaledRecipe(steps=steps, epochs=finetune * batch / train_rows, rule=rule)


_PHASE_WORDS = {
    "finetune": "fine-tuning",
    "pruning": "pruning",
    "lagrangian_warmup": "its Lagrangian warm-up",
    "post_pruning": "post-pruning",
}


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"
