"""Where one BERT-base training step's time goes on the device, next to Hugging Face's BERT on
the same batch: the question behind ``bench_gpu_engine.py``'s figures.

    python3 benchmarks/bench_gpu_step.py [--device cuda] [--steps 20] [--profile]
        [--layers 12 --hidden 768] [--batch-rows 32] [--length 128]

For fp32 and bf16 it times ``--steps`` fine-tuning steps (after 3 untimed) of
- this engine's ``train_step`` as a trial runs it (deterministic kernels on, as ``configure``
  sets them), and with deterministic kernels off;
- the same step split into forward, backward, clipping and the optimizer, with a device
  synchronisation between the parts (ms each);
- ``transformers``' BertForSequenceClassification with the same shapes, fused AdamW and
  clipping (a reference for what the hardware gives a plain eager model);
and the forward pass alone at the throughput harness's batch (128 rows), for both models.
``--profile`` adds torch.profiler's top operators of a few bf16 steps of this engine.
Random weights and random token ids: speed depends on shapes, not values.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from bench_gpu_engine import VOCAB, bert_base, random_data

from autoprumux.core.study import TrainingSection
from trainers.model.classifier import Classifier
from trainers.runtime.device import Engine
from trainers.training.loop import steps_done, train_step
from trainers.training.phases import finetune_phase


def timed(step: Callable[[], object], engine: Engine, steps: int) -> float:
    """Seconds per call, after 3 untimed calls, the device synchronised around the clock."""
    for _ in range(3):
        step()
    engine.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    engine.synchronize()
    return (time.perf_counter() - start) / steps


def engine_step(args: argparse.Namespace, engine: Engine) -> tuple[Callable[[], object], object]:
    torch.manual_seed(0)
    model = Classifier(bert_base(args.layers, args.hidden, 1)).to(engine.device)
    data = random_data(args.batch_rows * 8, args.length, engine.device)
    phase = finetune_phase(
        model, data, 10**6, 2e-5, args.batch_rows, 0, TrainingSection(batch_rows=args.batch_rows)
    )
    trained = [p for group in phase.optimizer.param_groups for p in group["params"]]
    batches = phase.data(0)
    model.train()
    return (lambda: train_step(phase, next(batches), 0, engine, None, trained)), (
        phase,
        batches,
        trained,
        model,
    )


def split_step(parts: object, engine: Engine, steps: int) -> dict[str, float]:
    """ms per part of the step, the device synchronised after each part."""
    phase, batches, trained, _ = parts  # type: ignore[misc]
    totals = dict.fromkeys(("batch", "forward", "backward", "clip", "optimizer"), 0.0)

    def mark(marks: list[float]) -> None:
        engine.synchronize()
        marks.append(time.perf_counter())

    for index in range(steps + 3):
        marks = [time.perf_counter()]
        batch = next(batches)
        mark(marks)
        with engine.autocast():
            loss = phase.loss(batch, steps_done(0, batch))
        mark(marks)
        phase.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        mark(marks)
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        mark(marks)
        phase.optimizer.step()
        mark(marks)
        if index >= 3:  # the first 3 are untimed
            for name, start, end in zip(totals, marks, marks[1:], strict=False):
                totals[name] += (end - start) * 1000 / steps
    return totals


def hf_step(args: argparse.Namespace, engine: Engine) -> tuple[Callable[[], object], object]:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=max(1, args.hidden // 64),
        intermediate_size=4 * args.hidden,
        num_labels=2,
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).to(engine.device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, fused=engine.on_gpu or None)
    data = random_data(args.batch_rows, args.length, engine.device)
    params = list(model.parameters())

    def step() -> object:
        with engine.autocast():
            logits = model(
                input_ids=data.input_ids,
                attention_mask=data.attention_mask,
                token_type_ids=data.token_type_ids,
            ).logits
            loss = F.cross_entropy(logits, data.labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        return loss.detach()

    return step, model


def forward_only(model: torch.nn.Module, engine: Engine, args: argparse.Namespace, hf: bool):
    data = random_data(128, args.length, engine.device)
    model.eval()

    @torch.inference_mode()
    def step() -> object:
        with engine.autocast():
            if hf:
                return model(input_ids=data.input_ids, attention_mask=data.attention_mask).logits
            return model(data.input_ids, data.attention_mask, data.token_type_ids)

    return step


def report(label: str, seconds: float, examples: int) -> None:
    print(f"{label:<34} {seconds * 1000:8.1f} ms {examples / seconds:9.1f} ex/s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--batch-rows", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    rows = args.batch_rows
    for precision in ("fp32", "bf16"):
        engine = Engine.resolve(args.device, precision)  # deterministic kernels on (on CUDA)
        step, parts = engine_step(args, engine)
        report(f"{precision} engine step", timed(step, engine, args.steps), rows)
        torch.use_deterministic_algorithms(False)
        report(f"{precision} engine, not deterministic", timed(step, engine, args.steps), rows)
        torch.use_deterministic_algorithms(engine.on_gpu, warn_only=True)
        split = split_step(parts, engine, args.steps)
        print(
            f"{precision} engine step split (ms): "
            + ", ".join(f"{k} {v:.1f}" for k, v in split.items())
        )
        model = parts[3]  # type: ignore[index]
        forward = timed(forward_only(model, engine, args, hf=False), engine, args.steps)
        report(f"{precision} engine forward, 128 rows", forward, 128)
        if args.profile and precision == "bf16":
            profile_steps(step, engine)
        del step, parts, model
        hf, hf_model = hf_step(args, engine)
        report(f"{precision} transformers BERT step", timed(hf, engine, args.steps), rows)
        forward = timed(forward_only(hf_model, engine, args, hf=True), engine, args.steps)  # type: ignore[arg-type]
        report(f"{precision} transformers forward, 128 rows", forward, 128)
        del hf, hf_model
        if engine.on_gpu:
            torch.cuda.empty_cache()


def profile_steps(step: Callable[[], object], engine: Engine) -> None:
    """torch.profiler's top operators over 5 steps, by host time and by device time."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if engine.on_gpu else [])
    with profile(activities=activities) as prof:
        for _ in range(5):
            step()
        engine.synchronize()
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=25))
    if engine.on_gpu:
        print(averages.table(sort_by="self_device_time_total", row_limit=15))


if __name__ == "__main__":
    main()
