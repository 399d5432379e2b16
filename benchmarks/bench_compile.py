"""Compiled training steps against eager ones: the tiny study's fine-tuning and pruning phases,
examples/s and compile time, side by side in one run.

    .venv/bin/python benchmarks/bench_compile.py [--study studies/sst2-tiny.toml]
        [--device cpu|cuda] [--steps 30] [--warmup 3] [--n 1] [--threads 2]
        [--backend inductor|aot_eager] [--num-layers K] [--max-seq-length L]
        [--precision auto|fp32|bf16] [--json FILE]

For each phase (fine-tuning; CoFi pruning with distillation from the fine-tuned weights) and
each engine (on a CPU, eager with each batch cut to its longest row, the CPU's default; eager
padded to the length buckets; compiled as ``[training] compile = true`` does:
``Engine.compile_options``, CUDA graphs on a GPU, over the same buckets; a GPU pads to
buckets eagerly too) it runs ``--warmup`` + ``--steps`` steps of the study's recipe on its
pretrained model and training sentences, the device synchronised at the end of the warm-up
steps and of the run, and prints:

- examples/s over the ``--steps`` timed steps;
- the warm-up's seconds, and the compile time: the warm-up's seconds less ``--warmup`` steps
  at the timed rate (the first step of each bucket length compiles; a bucket first met after
  the warm-up compiles inside the timed steps: give ``--warmup`` enough steps);
- the graphs dynamo compiled in the phase (``PhaseFigures.compiles``);
- TFLOP/s and MFU over the timed steps (``Phase.flop`` of their batches,
  :mod:`trainers.runtime.flops`; MFU against the GPU's dense peak, none on a CPU).

``--num-layers`` and ``--max-seq-length`` replace the study's (``0``: all layers).

Every run starts from the same weights and seed, prepared as a trial prepares them (the
study's frozen word embeddings and dropout). ``--backend aot_eager`` checks the script in
seconds on a small CPU (dynamo's graph capture, eager kernels: no speed-up expected).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from autoprumux.core.data_spec import data_spec
from autoprumux.core.study import Compile, Study, load_study
from trainers.data.splits import Encoded
from trainers.data.tables import load_tables
from trainers.data.token_cache import encoded_table
from trainers.model.checkpoints import load_pretrained, load_tokenizer
from trainers.model.classifier import Classifier
from trainers.pruning.l0 import L0Module
from trainers.runtime.device import Engine
from trainers.runtime.flops import mfu, peak_flops
from trainers.training.loop import Phase, PhaseFigures, run_phase
from trainers.training.phases import finetune_phase, identity_map, pruning_phase
from trainers.trial.services import as_trained


@dataclasses.dataclass(frozen=True)
class Timing:
    phase: str
    engine: str
    examples_per_s: float  # over the timed steps
    warmup_s: float  # the warm-up steps' wall time, compiling included
    compile_s: float  # warmup_s less the warm-up steps at the timed rate
    graphs: int  # PhaseFigures.compiles
    tflop_per_s: float  # over the timed steps
    mfu: float | None  # of the GPU's dense peak in the engine's precision; None on a CPU
    examples: int  # in the timed steps
    began: float  # the timed steps' start and end, time.time() (comparable across processes)
    ended: float


def timed(
    build: Callable[[], Phase],
    engine: Engine,
    warmup: int,
    steps: int,
    at_warm: Callable[[], object] | None = None,
) -> Timing:
    """One phase of ``warmup + steps`` steps: the examples/s of the last ``steps``;
    ``at_warm`` runs between the two (after the device is synchronised), before the clock
    starts."""
    phase = build()
    phase.steps = warmup + steps
    figures: list[PhaseFigures] = []
    marks: dict[str, float] = {}
    examples: list[int] = []
    flop: list[float] = []
    drawn = phase.data

    def counted(start: int):  # type: ignore[no-untyped-def]
        for batch in drawn(start):
            examples.append(len(batch))
            flop.append(phase.flop(batch) if phase.flop is not None else 0.0)
            yield batch

    def end_of_warmup(step: int) -> None:
        engine.synchronize()
        if at_warm is not None:
            at_warm()
        marks["warm"], marks["began"] = time.perf_counter(), time.time()

    phase.data = counted
    began = time.perf_counter()
    run_phase(
        phase, engine=engine, check=end_of_warmup, check_steps={warmup}, figures=figures.append
    )
    ended = time.perf_counter()  # run_phase synchronised the device for its figures
    seconds = ended - marks["warm"]
    timed_examples = sum(examples[warmup : warmup + steps])
    rate = timed_examples / seconds
    achieved = sum(flop[warmup : warmup + steps]) / seconds  # FLOP/s
    name = torch.cuda.get_device_name(engine.device) if engine.on_gpu else "cpu"
    peak = peak_flops(name, engine.precision.value) if engine.on_gpu else None
    warm = marks["warm"] - began
    per_step = seconds / steps
    return Timing(
        phase=phase.name,
        engine="compiled" if engine.compile else "eager",
        examples_per_s=rate,
        warmup_s=warm,
        compile_s=max(0.0, warm - warmup * per_step),
        graphs=figures[0].compiles,
        tflop_per_s=achieved / 1e12,
        mfu=mfu(sum(flop[warmup : warmup + steps]), seconds, peak) if peak else None,
        examples=timed_examples,
        began=marks["began"],
        ended=marks["began"] + seconds,
    )


def training_sentences(study: Study, rows: int, device: torch.device) -> Encoded:
    """The study's first ``rows`` training sentences, encoded by its model's tokenizer, on
    ``device``."""
    tokenizer = load_tokenizer(study.model.name_or_path)
    tables = load_tables(data_spec(study))
    encoded = encoded_table(tables.train.slice(0, rows), tokenizer, study.model.max_seq_length)
    return encoded.to(device)


def phases(
    study: Study, train: Encoded, n: int, device: torch.device
) -> dict[str, Callable[[], Phase]]:
    """Builders of the two phases, each from the same weights and seed every call."""
    m, training = study.model, study.training

    def model() -> Classifier:
        """The pretrained model as a trial trains it (TrialServices.prepared): the study's
        frozen word embeddings (no AdamW over the vocabulary's table) and dropout."""
        torch.manual_seed(0)
        extra: dict[str, Any] = {"mux_width": n} if n > 1 else {}
        built, _ = load_pretrained(m.name_or_path, num_layers=m.num_layers, **extra)
        return as_trained(built, training).to(device)

    def finetune() -> Phase:
        return finetune_phase(
            model(), train, 1, training.finetune_learning_rate, training.batch_rows, 0, training
        )

    def prune() -> Phase:
        student, teacher = model(), model().eval()
        l0 = L0Module(student.arch).to(device)
        layer_map = identity_map(student.arch.hidden_size).to(device)
        return pruning_phase(student, teacher, l0, layer_map, train, training, 1, 10, 0.6, 0)

    return {"finetune": finetune, "prune": prune}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default="studies/sst2-tiny.toml")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's)")
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--rows", type=int, default=4096, help="training sentences used")
    parser.add_argument("--num-layers", type=int, default=None, help="0: all the model's")
    parser.add_argument("--max-seq-length", type=int, default=None)
    parser.add_argument("--precision", default=None, help="the study's by default")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    study = load_study(args.study)
    model = dataclasses.replace(
        study.model,
        num_layers=study.model.num_layers if args.num_layers is None else args.num_layers,
        max_seq_length=args.max_seq_length or study.model.max_seq_length,
    )
    # compile = true: the compiled engine's phases pad to buckets on a CPU too
    training = dataclasses.replace(
        study.training,
        compile=Compile.TRUE,
        precision=args.precision or study.training.precision,
    )
    study = dataclasses.replace(study, model=model, training=training)
    eager = Engine.resolve(args.device, study.training.precision, Compile.FALSE)
    compiled = dataclasses.replace(eager, compile=True, compile_backend=args.backend)
    train = training_sentences(study, args.rows, eager.device)
    # on a CPU the default engine cuts each batch to its longest row (compile = "auto": no
    # buckets there); timed too, the compiled steps' real competitor
    cut = dataclasses.replace(study, training=dataclasses.replace(training, compile=Compile.FALSE))
    arms = [(study, eager, "eager"), (study, compiled, "compiled")]
    if not eager.on_gpu:
        arms.insert(0, (cut, eager, "eager cut"))
    rows = []
    for name in ("finetune", "prune"):
        for arm_study, engine, label in arms:
            build = phases(arm_study, train, args.n, eager.device)[name]
            rows.append(
                dataclasses.replace(timed(build, engine, args.warmup, args.steps), engine=label)
            )
            print(f"  {name} {label}: done", flush=True)
    where = torch.cuda.get_device_name(eager.device) if eager.on_gpu else "CPU"
    print(
        f"\n{where}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"N={args.n}, {args.steps} timed steps after {args.warmup}, backend {args.backend}"
    )
    header = ("phase", "engine", "examples/s", "warm-up s", "compile s", "graphs", "TFLOP/s")
    print("{:<10} {:<10} {:>11} {:>10} {:>10} {:>7} {:>8}  MFU".format(*header))
    for row in rows:
        share = f"{100 * row.mfu:.1f}%" if row.mfu is not None else "-"
        print(
            f"{row.phase:<10} {row.engine:<10} {row.examples_per_s:>11.1f} {row.warmup_s:>10.1f} "
            f"{row.compile_s:>10.1f} {row.graphs:>7} {row.tflop_per_s:>8.2f}  {share}"
        )
    for name in ("finetune", "prune"):
        rates = {r.engine: r.examples_per_s for r in rows if r.phase == name}
        for label in (a[2] for a in arms if a[2] != "compiled"):
            print(f"{name}: compiled / {label} = {rates['compiled'] / rates[label]:.2f}x")
    if args.json:
        meta = {"device": where, "n": args.n, "steps": args.steps, "warmup": args.warmup}
        record = {**meta, "precision": eager.precision.value, "torch": torch.__version__}
        Path(args.json).write_text(
            json.dumps({**record, "rows": [dataclasses.asdict(r) for r in rows]}, indent=1)
        )


if __name__ == "__main__":
    main()
