"""BERT-base on the device it is given: training examples/s per phase and precision, and the
paper grid's throughput table. The one script to run when a GPU machine is lent (no hub there).

    .venv/bin/python benchmarks/bench_gpu_engine.py [--device cuda] [--steps 30]
        [--precisions fp32 bf16] [--n 1 2 5 10] [--batch-rows 32] [--length 128]
        [--compile] [--json FILE] [--skip-training] [--tables studies/throughput]
        [--layers 12 --hidden 768]

Models have bert-base-uncased's shape (12 layers, hidden 768, 12 heads, FFN 3072, vocabulary
30522) with random weights — speed depends on shapes, not weights — and batches of random
token ids of ``--length`` tokens, ``--batch-rows`` × N sequences (the paper: 32 and 128).
For each N and precision it times, after 3 untimed steps, ``--steps`` steps of
- task fine-tuning (cross-entropy), and
- CoFi pruning with distillation (sampled L0 masks, the teacher's logits and layers, the
  Lagrangian),
and prints examples/s (``--json FILE`` also writes them); ``--compile`` runs the models through
``torch.compile`` as ``[training] compile = true`` does. With ``--tables DIR`` it then
measures the throughput table of the paper's grid (N ∈ {1, 2, 5, 10} × s ∈ {0, 0.60, …, 0.95},
``studies/sst2.toml``'s harness settings) with ``autoprumux measure``'s own code, each (N, s)
in each of the study's precisions on that device (fp32, bf16 and fp16 on a GPU) in one run, into
``DIR/sst2-<device>-float32.json`` (the name a search looks up), and prints every speedup over
fp32's (1, 0). ``--layers``/``--hidden`` shrink the model to try the script
on a CPU. ``benchmarks/gpu_session.sh`` is the whole prepared run for a lent GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from autoprumux.core.study import TrainingSection, load_study
from trainers.data.splits import Encoded
from trainers.model.architecture import Architecture
from trainers.model.classifier import Classifier
from trainers.pruning.l0 import L0Module
from trainers.runtime.device import Engine
from trainers.training.loop import run_phase
from trainers.training.phases import finetune_phase, identity_map, pruning_phase

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 30522
MODEL_LABEL = "bert-base-uncased's config, random weights (speed depends on shapes only)"


def bert_base(layers: int, hidden: int, n: int) -> Architecture:
    return Architecture.dense(
        num_layers=layers,
        hidden_size=hidden,
        num_heads=max(1, hidden // 64),
        intermediate_size=4 * hidden,
        vocab_size=VOCAB,
        mux_width=n,
        key_norm=0.0,
    )


def random_data(rows: int, length: int, device: torch.device) -> Encoded:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, VOCAB, (rows, length), generator=generator)
    ids[:, 0] = 101
    labels = torch.randint(0, 2, (rows,), generator=generator)
    return Encoded(ids, torch.ones_like(ids), torch.zeros_like(ids), labels).to(device)


def examples_per_second(phase, engine: Engine, steps: int, per_step: int) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    run_phase(dataclasses.replace(phase, steps=3), engine=engine)  # untimed: kernels, caches
    engine.synchronize()
    if engine.compile:
        print(f"  compiling + 3 steps: {time.perf_counter() - start:.0f} s", flush=True)
    phase.steps = steps
    engine.synchronize()
    start = time.perf_counter()
    run_phase(phase, engine=engine)
    engine.synchronize()
    return steps * per_step / (time.perf_counter() - start)


def training_speed(args: argparse.Namespace) -> list[dict[str, object]]:
    rows = []
    training = TrainingSection(batch_rows=args.batch_rows)
    for precision in args.precisions:
        engine = Engine.resolve(args.device, precision, compile=args.compile)
        for n in args.n:
            arch = bert_base(args.layers, args.hidden, n)
            per_step = args.batch_rows * n
            data = random_data(per_step * (args.steps + 4), args.length, engine.device)
            torch.manual_seed(0)
            student = engine.prepared(Classifier(arch))
            teacher = engine.prepared(Classifier(arch)).eval()
            finetune = finetune_phase(student, data, args.steps, 2e-5, args.batch_rows, 0, training)
            l0 = L0Module(arch).to(engine.device)
            prune = pruning_phase(
                student,
                teacher,
                l0,
                identity_map(arch.hidden_size).to(engine.device),
                data,
                training,
                args.steps,
                args.steps // 2,
                0.6,
                0,
            )
            for name, phase in (("finetune", finetune), ("prune + distill", prune)):
                rate = examples_per_second(phase, engine, args.steps, per_step)
                rows.append(
                    {
                        "phase": name,
                        "n": n,
                        "precision": precision,
                        "compile": args.compile,
                        "examples_s": rate,
                    }
                )
                compiled = " compiled" if args.compile else ""
                print(
                    f"{name:<16} N={n:<3} {precision:<5}{compiled} {rate:>10.1f} examples/s",
                    flush=True,
                )
            del student, teacher, l0
            if engine.on_gpu:
                torch.cuda.empty_cache()
    return rows


def local_bert_base(folder: Path, layers: int, hidden: int) -> Path:
    """A model folder with bert-base-uncased's config and a vocabulary of its size (ids 0, 100,
    101, 102, 103 are [PAD], [UNK], [CLS], [SEP], [MASK]): what measuring needs, with no hub."""
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "model_type": "bert",
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": max(1, hidden // 64),
        "intermediate_size": 4 * hidden,
        "vocab_size": VOCAB,
        "max_position_embeddings": 512,
    }
    (folder / "config.json").write_text(json.dumps(config))
    special = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]"}
    words = [special.get(i, f"[unused{i}]" if i < 1000 else f"w{i}") for i in range(VOCAB)]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    return folder


def paper_table(args: argparse.Namespace) -> None:
    from autoprumux.core.progress import ProgressLines
    from autoprumux.files.atomic import write_text_atomic
    from autoprumux.measurement import run_measure

    study = load_study(ROOT / "studies" / "sst2.toml")
    device = "cuda" if args.device.startswith("cuda") else "cpu"
    settings = dataclasses.replace(study.throughput, device=args.device)
    out = Path(args.tables) / f"{study.name}-{device}-{settings.dtype}.json"
    with tempfile.TemporaryDirectory() as scratch:
        model = local_bert_base(Path(scratch) / "bert-base", args.layers, args.hidden)
        study = dataclasses.replace(
            study, model=dataclasses.replace(study.model, name_or_path=str(model))
        )
        report = run_measure(
            study,
            settings,
            out_path=str(out),
            progress=ProgressLines("table ", print, 0.1),
        )
    # the fingerprint names the shape measured, not the scratch folder it was read from
    table = json.loads(out.read_text())
    table["fingerprint"]["model"] = (
        MODEL_LABEL
        if (args.layers, args.hidden) == (12, 768)
        else f"BERT shape: {args.layers} layers, hidden {args.hidden}, random weights"
    )
    write_text_atomic(out, json.dumps(table, indent=1) + "\n")
    print(f"\nthroughput table -> {out} ({report['fingerprint']['device_name']})")
    for row in report["rows"]:  # one per (N, s, precision): fp32, bf16 and fp16 on a GPU
        latency = row["latency_s"]
        batch_1 = f", batch 1 {1000 * latency:.2f} ms" if latency is not None else ""
        print(
            f"({row['n']}, {row['sparsity']:g}, {row['precision']}) {row['throughput']:>10.1f} "
            f"examples/s {row['speedup']:>6.2f}x (ideal {row['ideal_speedup']:.2f}x){batch_1}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--n", nargs="+", type=int, default=[1, 2, 5, 10])
    parser.add_argument("--batch-rows", type=int, default=32)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--compile", action="store_true", help="torch.compile the models")
    parser.add_argument("--json", default=None, help="also write the training rows here")
    parser.add_argument("--skip-training", action="store_true", help="only the tables")
    parser.add_argument("--tables", default=None, help="also measure the paper grid's tables")
    args = parser.parse_args()
    if not args.skip_training:
        rows = training_speed(args)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    if args.tables:
        paper_table(args)


if __name__ == "__main__":
    main()
