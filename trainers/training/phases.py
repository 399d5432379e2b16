"""The PruMUX training phases, each as a :class:`~trainers.training.loop.Phase` for the shared loop.

1. retrieval warm-up (N > 1) and optional masked-LM: :func:`warmup_phase`;
2. task fine-tuning: :func:`finetune_phase` (this model is the teacher of every (N, s));
3. CoFi pruning with distillation: :func:`pruning_phase` (logit KL at temperature T plus the
   MSE of every layer's output over real tokens through a learned linear map, and the
   Lagrangian with a target that ramps up linearly);
4. materialization (:mod:`~trainers.pruning.materialize`), then fine-tuning of the pruned model
   with the teacher's logits: :func:`finetune_phase` with a teacher.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autoprumux.core.metrics import Metric, score
from autoprumux.core.study import Compile, TrainingSection, WarmupSection
from trainers.data.splits import Encoded, batches, chosen_buckets, endless_batches
from trainers.model.classifier import Classifier
from trainers.pruning.l0 import L0Module
from trainers.runtime.device import Engine, adamw
from trainers.runtime.flops import finetune_flop, pruning_flop, warmup_flop
from trainers.training.loop import Phase
from trainers.training.retrieval import RetrievalHead, retrieval_loss

logger = logging.getLogger(__name__)


def _split_parameters(model: Classifier) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(encoder parameters, new parameters: multiplexer, demultiplexer, pooler, classifier)."""
    encoder = [p for p in model.encoder.parameters() if p.requires_grad]
    encoder_ids = {id(p) for p in encoder}
    new = [p for p in model.parameters() if p.requires_grad and id(p) not in encoder_ids]
    return encoder, new


def _grouped_rows(model: Classifier, group_by_length: bool) -> int:
    """``group_rows`` for the model's batches: its rows of N when grouping by length, else 0."""
    return model.arch.mux_width if group_by_length else 0


def _on_device_of(model: nn.Module, data: Encoded) -> Encoded:
    """The data where the model is, moved once for the whole phase (batches index it there)."""
    return data.to(next(model.parameters()).device)


def padding_buckets(
    data: Encoded,
    size: int,
    group_rows: int,
    given: tuple[int, ...] = (),
    shuffled: bool = True,
    compiled: bool = False,
) -> tuple[int, ...]:
    """The lengths the cut batches of ``data`` (``size`` examples each, as
    :func:`trainers.data.splits.batches` draws them) are padded up to: ``given``
    (``[training] length_buckets``) when set; else, where the data is on a GPU or the steps
    are ``compiled`` (``[training] compile = true``), up to 8 chosen from its lengths
    (:func:`trainers.data.splits.chosen_buckets`: a compiled step sees a few fixed shapes,
    one graph each); else none, each batch cut to its longest row (on a CPU that is faster,
    and it is today's computation exactly)."""
    if given:
        return given
    if data.device.type != "cuda" and not compiled:
        return ()
    chosen = chosen_buckets(data, size, group_rows, shuffled)
    logger.info("batches of %d padded to the length buckets %s", size, list(chosen))
    return chosen


def training_buckets(
    model: Classifier,
    train: Encoded,
    training: TrainingSection,
    batch_rows: int | None = None,
    teacher: Classifier | None = None,
) -> tuple[int, ...]:
    """The length buckets of :func:`finetune_phase` and :func:`pruning_phase` (``batch_rows``:
    the fine-tuning's, the study's by default), what a trial records: () where batches are
    cut to their longest row (a CPU, buckets not given), or are not cut at all (a model or
    teacher that attends to padding: a PUBLISHED multiplexed model keeps its full length)."""
    if not (model.arch.ignores_padding and (teacher is None or teacher.arch.ignores_padding)):
        return ()
    size = (batch_rows or training.batch_rows) * model.arch.mux_width
    group_rows = _grouped_rows(model, training.group_by_length)
    compiled = training.compile is Compile.TRUE
    return padding_buckets(
        _on_device_of(model, train), size, group_rows, training.length_buckets, compiled=compiled
    )


def warmup_phase(
    model: Classifier,
    head: RetrievalHead,
    text: Encoded,
    settings: WarmupSection,
    seed: int,
    steps: int,
    mask_token_id: int | None = None,
    length_buckets: tuple[int, ...] = (),
    compiled: bool = False,
) -> Phase:
    """Retrieval warm-up (or masked-LM with ``mask_token_id``) of a multiplexed model;
    ``length_buckets``: the study's ``[training] length_buckets``, ``compiled``: whether its
    ``compile`` is true (:func:`padding_buckets`)."""
    text = _on_device_of(model, text)
    encoder, new = _split_parameters(model)
    optimizer = adamw(
        [
            {"params": encoder, "lr": settings.learning_rate},
            {"params": new + list(head.parameters()), "lr": settings.new_learning_rate},
        ]
    )
    size = settings.batch_rows * model.arch.mux_width
    trim = model.arch.ignores_padding  # the loss reads real tokens only
    group_rows = _grouped_rows(model, settings.group_by_length)
    buckets = (
        padding_buckets(text, size, group_rows, length_buckets, compiled=compiled) if trim else ()
    )

    def loss(batch: Encoded, done: Tensor) -> Tensor:
        return retrieval_loss(
            model, head, batch, settings.positions, settings.negatives, mask_token_id
        )

    return Phase(
        name="mlm" if mask_token_id is not None else "warmup",
        modules={"model": model, "head": head},
        optimizer=optimizer,
        steps=steps,
        loss=loss,
        data=lambda start: endless_batches(text, size, seed, start, trim, group_rows, buckets),
        flop=warmup_flop(model.arch, settings.positions, settings.negatives),
    )


def distillation_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """KL(teacher || student) at temperature T, times T^2 (Hinton et al.)."""
    return (
        F.kl_div(
            F.log_softmax(student_logits / temperature, dim=-1),
            F.softmax(teacher_logits / temperature, dim=-1),
            reduction="batchmean",
        )
        * temperature**2
    )


def token_mse(student: Tensor, teacher: Tensor, tokens: Tensor | None) -> Tensor:
    """The mean squared error of two layer outputs ([G, L, H] each) over the positions that
    hold a real token (``tokens``: [G, L], 1 there), or over every position (None).

    CoFi's code averages over every position, padding included: its loss then depends on how
    far a batch is padded, and mostly matches padding (SST-2 fills 13 of 64 positions on
    average). Over real tokens only, cutting a batch's unused padding changes nothing."""
    if tokens is None:
        return F.mse_loss(student, teacher)
    weights = tokens.to(student.dtype).unsqueeze(-1)  # [G, L, 1]
    squared = (student - teacher).square() * weights
    return squared.sum() / (weights.sum() * student.shape[-1]).clamp(min=1.0)


def finetune_phase(
    model: Classifier,
    train: Encoded,
    steps: int,
    learning_rate: float,
    batch_rows: int,
    seed: int,
    training: TrainingSection,
    teacher: Classifier | None = None,
    name: str = "finetune",
) -> Phase:
    """Cross-entropy on the labels; with a teacher, plus the logit distillation term. The
    parts outside the encoder train at ``training.new_learning_rate`` when that is set."""
    train = _on_device_of(model, train)
    encoder, new = _split_parameters(model)
    optimizer = adamw(
        [
            {"params": encoder, "lr": learning_rate},
            {"params": new, "lr": training.new_learning_rate or learning_rate},
        ]
    )
    size = batch_rows * model.arch.mux_width
    # the loss reads logits only
    trim = model.arch.ignores_padding and (teacher is None or teacher.arch.ignores_padding)
    group_rows = _grouped_rows(model, training.group_by_length)
    buckets = training_buckets(model, train, training, batch_rows, teacher)

    def loss(batch: Encoded, done: Tensor) -> Tensor:
        logits = model(batch.input_ids, batch.attention_mask, batch.token_type_ids)
        value = F.cross_entropy(logits, batch.labels)
        if teacher is not None:
            with torch.no_grad():
                target = teacher(batch.input_ids, batch.attention_mask, batch.token_type_ids)
            value = value + distillation_kl(logits, target, training.distill_temperature)
        return value

    return Phase(
        name=name,
        modules={"model": model},
        optimizer=optimizer,
        steps=steps,
        loss=loss,
        data=lambda start: endless_batches(train, size, seed, start, trim, group_rows, buckets),
        flop=finetune_flop(model.arch, teacher.arch if teacher is not None else None),
        max_grad_norm=training.max_grad_norm,
    )


def _pruning_optimizer(
    student: Classifier, layer_map: nn.Linear, l0: L0Module, training: TrainingSection
) -> torch.optim.AdamW:
    """CoFi's three parameter groups: the model and the layer map (weight decay), the gates'
    log-alphas, and the two Lagrange multipliers (no decay), each at its own learning rate."""
    return adamw(
        [
            {
                "params": [p for p in student.parameters() if p.requires_grad]
                + list(layer_map.parameters()),
                "lr": training.pruning_learning_rate,
            },
            {
                "params": list(l0.log_alpha.parameters()),
                "lr": training.l0_learning_rate,
                "weight_decay": 0.0,
            },
            {
                "params": [l0.lambda_1, l0.lambda_2],
                "lr": training.lagrangian_learning_rate,
                "weight_decay": 0.0,
            },
        ]
    )


def pruning_phase(
    student: Classifier,
    teacher: Classifier,
    l0: L0Module,
    layer_map: nn.Linear,
    train: Encoded,
    training: TrainingSection,
    steps: int,
    warmup_steps: int,
    target: float,
    seed: int,
) -> Phase:
    """CoFi: sampled masks, distillation from the teacher, and the Lagrangian towards
    ``target`` (reached linearly over ``warmup_steps``, on the steps already done as CoFi's
    trainer counts them: 0 at the first step); the multipliers ascend, and the log-alphas are
    clamped to CoFi's range after every step."""
    train = _on_device_of(student, train)
    optimizer = _pruning_optimizer(student, layer_map, l0, training)
    size = training.batch_rows * student.arch.mux_width
    alpha, temperature = training.distill_ce_alpha, training.distill_temperature
    # the layer loss reads real tokens only (token_mse), the logits nothing else
    trim = student.arch.ignores_padding and teacher.arch.ignores_padding
    group_rows = _grouped_rows(student, training.group_by_length)
    buckets = training_buckets(student, train, training, teacher=teacher)

    def loss(batch: Encoded, done: Tensor) -> Tensor:
        inputs = (batch.input_ids, batch.attention_mask, batch.token_type_ids)
        teacher_layers: list[Tensor] = []
        with torch.no_grad():
            teacher_logits = teacher(*inputs, collect=teacher_layers)
        student_layers: list[Tensor] = []
        logits = student(*inputs, masks=l0.sample(), collect=student_layers)
        # over the positions the encoder reads (every position where it attends to padding)
        tokens = student.encoded_tokens(batch.attention_mask) if trim else None
        layer_loss = torch.stack(
            [
                token_mse(layer_map(s), t, tokens)
                for s, t in zip(student_layers, teacher_layers, strict=True)
            ]
        ).mean()
        distill = (
            alpha * distillation_kl(logits, teacher_logits, temperature) + (1 - alpha) * layer_loss
        )
        return distill + l0.lagrangian(ramped(done))

    def ramped(done: Tensor) -> Tensor | float:
        """The target after ``done`` steps, min(1, done / warmup) x target: computed in float64
        on the device (what Python's floats computed), then float32, as a number meeting a
        float32 tensor is: no new constant, so no new graph, every step."""
        if not warmup_steps:
            return target
        return (torch.clamp(done / warmup_steps, max=1.0) * target).float()

    def ascend_multipliers() -> None:
        for multiplier in (l0.lambda_1, l0.lambda_2):
            if multiplier.grad is not None:
                multiplier.grad.neg_()

    teacher.eval()
    return Phase(
        name="prune",
        modules={"student": student, "l0": l0, "layer_map": layer_map},
        optimizer=optimizer,
        steps=steps,
        loss=loss,
        data=lambda start: endless_batches(train, size, seed, start, trim, group_rows, buckets),
        decay=(True, False, False),
        flop=pruning_flop(student.arch, teacher.arch),
        max_grad_norm=training.max_grad_norm,
        after_backward=ascend_multipliers,
        after_step=l0.clamp_,
    )


def identity_map(size: int) -> nn.Linear:
    layer = nn.Linear(size, size)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(size))
        layer.bias.zero_()
    return layer


@torch.no_grad()
def confusion(
    model: Classifier,
    data: Encoded,
    batch_rows: int = 32,
    engine: Engine | None = None,
    num_labels: int | None = None,
    length_buckets: tuple[int, ...] = (),
) -> list[list[int]]:
    """The dev predictions counted by gold and predicted label: ``confusion[gold][predicted]``
    (``num_labels`` square, the model's by default; the study's metric is
    :func:`autoprumux.core.metrics.score` of it). On the model's device in the engine's
    precision; multiplexed models mix consecutive examples, N at a time. One count per
    batch (:class:`BatchCounts`), read back to the host once at the end. Every gold label
    must be in [0, num_labels). ``length_buckets``: as the training's
    (:func:`training_buckets`), so that evaluation sees the same shapes; empty, chosen from
    ``data`` on a GPU or for a compiled engine (:func:`padding_buckets`)."""
    model.eval()
    engine = engine or Engine()
    device = next(model.parameters()).device
    size = num_labels if num_labels is not None else model.arch.num_labels
    counts = torch.zeros(size * size, dtype=torch.long, device=device)  # [gold * K + predicted]
    data, rows = data.to(device), batch_rows * model.arch.mux_width
    trim = model.arch.ignores_padding
    buckets = (
        padding_buckets(data, rows, 0, length_buckets, shuffled=False, compiled=engine.compile)
        if trim
        else ()
    )
    count = BatchCounts(model, size, rows, engine)
    with engine.autocast():
        for batch in batches(data, rows, drop_last=False, trim=trim, buckets=buckets):
            counts += count(batch)
    flat = counts.tolist()
    return [flat[gold * size : (gold + 1) * size] for gold in range(size)]


class BatchCounts:
    """A batch's confusion counts ([K * K], ``gold * K + predicted``), without a wait for the
    device: counted by an ``index_add`` into the K x K cells, whose shape, unlike
    ``bincount``'s, does not depend on the values. A compiled engine
    (``Engine.compile_options``) runs the forward and the counting as one compiled function
    at ``rows`` rows always: the last, partial batch is padded with all-padding rows that
    count 0 (a multiplexed model pads its last group so anyway), so that it compiles once per
    bucket length."""

    def __init__(self, model: Classifier, labels: int, rows: int, engine: Engine) -> None:
        self.model, self.labels, self.rows, self.engine = model, labels, rows, engine
        self.count = (
            torch.compile(self._count, **engine.compile_options())
            if engine.compile
            else self._count
        )

    def __call__(self, batch: Encoded) -> Tensor:  # [K * K]: the batch's real rows
        real = len(batch)
        if self.engine.compile:
            if real < self.rows:
                batch = _padded(batch, self.rows)
            if self.engine.on_gpu:
                torch.compiler.cudagraph_mark_step_begin()  # type: ignore[no-untyped-call]
        counted = torch.arange(len(batch), device=batch.device) < real  # [rows]
        return self.count(
            batch.input_ids, batch.attention_mask, batch.token_type_ids, batch.labels, counted
        )

    def _count(
        self,
        input_ids: Tensor,  # [rows, L]
        attention_mask: Tensor,
        token_type_ids: Tensor,
        labels: Tensor,  # [rows]
        counted: Tensor,  # [rows] bool: a real row
    ) -> Tensor:
        logits = self.model(input_ids, attention_mask, token_type_ids)
        cells = torch.where(counted, labels * self.labels + logits.argmax(-1), 0)  # [rows]
        zeros = torch.zeros(self.labels * self.labels, dtype=torch.long, device=cells.device)
        return zeros.index_add(0, cells, counted.long())


def _padded(batch: Encoded, rows: int) -> Encoded:
    """``batch`` with all-padding rows appended (token 0, attention 0, label 0) up to ``rows``."""

    def pad(t: Tensor) -> Tensor:
        return torch.cat([t, t.new_zeros(rows - t.shape[0], *t.shape[1:])])

    return Encoded(
        pad(batch.input_ids),
        pad(batch.attention_mask),
        pad(batch.token_type_ids),
        pad(batch.labels),
    )


def accuracy(
    model: Classifier, data: Encoded, batch_rows: int = 32, engine: Engine | None = None
) -> float:
    """Dev accuracy, a fraction: the share of :func:`confusion`'s diagonal."""
    return score(Metric.ACCURACY, confusion(model, data, batch_rows, engine))


def steps_for(steps: int, epochs: float, examples: int, batch_size: int) -> int:
    """A phase's step count: ``steps`` if set, else ``epochs`` over the training examples."""
    return steps if steps > 0 else max(1, round(epochs * examples / batch_size))
