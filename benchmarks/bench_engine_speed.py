"""Examples per second of every training phase, for two versions of the engine side by side.

    git worktree add /tmp/before <commit>      # the engine to compare against
    .venv/bin/python benchmarks/bench_engine_speed.py --before /tmp/before \
        [--study studies/sst2-tiny.toml] [--steps 30] [--rounds 3] [--threads 2] [--device cpu]

Each round runs every phase of the tiny study's recipe (retrieval warm-up and masked-LM at
N = 2; fine-tuning at N = 1 and N = 2; distilled fine-tuning at N = 2 from a (1, 0) model;
CoFi pruning at N = 1 and N = 2; post-pruning fine-tuning of the materialized model; dev
evaluation) once with each version, in a fresh subprocess each, alternating which goes first,
so that the machine's drift hits both alike. It prints the median examples/second of each phase
per version and their ratio (this / before). Weights are the study's pretrained model, data its
training sentences; each phase is timed over ``--steps`` steps after two untimed ones. A
relative ``--study`` is each version's own copy of the study file (its recipe: the tiny study's
``group_by_length`` is timed with the engine that has it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs inside the subprocess, against whichever engine is first on sys.path. Only calls that
# both versions have (extra arguments of the newer one keep their defaults).
_PROBE = r"""
import json, sys, time
import torch
import trainers
print("ENGINE " + trainers.__file__, file=sys.stderr)
torch.set_num_threads(int(sys.argv[3]))
from autoprumux.core.study import load_study
from trainers.model.checkpoints import load_pretrained, load_tokenizer
from autoprumux.core.data_spec import data_spec
from trainers.data.tables import load_tables
from trainers.data.token_cache import encoded_table
from trainers.pruning.l0 import L0Module
from trainers.training.loop import run_phase
from trainers.pruning.materialize import materialize
from trainers.training.phases import (
    accuracy, finetune_phase, identity_map, pruning_phase, warmup_phase,
)
from trainers.training.retrieval import RetrievalHead

study = load_study(sys.argv[1])
steps, device = int(sys.argv[2]), sys.argv[4]
m, t = study.model, study.training
tokenizer = load_tokenizer(m.name_or_path)
tables = load_tables(data_spec(study))
train = encoded_table(tables.train.slice(0, 4096), tokenizer, m.max_seq_length)
dev = encoded_table(tables.dev, tokenizer, m.max_seq_length)
mux = {"mux_width": 2, "key_norm": study.multiplexing.key_norm,
       "pooling": __import__("trainers.model.architecture", fromlist=["Pooling"]).Pooling(
           study.multiplexing.pooling)}

def model(n):
    torch.manual_seed(0)
    extra = mux if n > 1 else {}
    built, _ = load_pretrained(m.name_or_path, num_layers=m.num_layers, **extra)
    if t.freeze_word_embeddings:
        built.encoder.embeddings.word.weight.requires_grad_(False)
    return built.to(device)

def timed(phase, examples_per_step):
    run_phase(phase.__class__(**{**phase.__dict__, "steps": 2}))  # untimed: allocations, caches
    phase.steps = steps
    start = time.perf_counter()
    run_phase(phase)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * examples_per_step / (time.perf_counter() - start)

rates = {}
w = study.warmup
two = model(2)
head = RetrievalHead(two)
rates["warmup (N=2)"] = timed(warmup_phase(two, head, train.truncated(w.max_length), w, 0, steps),
                              w.batch_rows * 2)
rates["mlm (N=2)"] = timed(warmup_phase(two, head, train.truncated(w.max_length), w, 0, steps,
                                        mask_token_id=tokenizer.mask_token_id), w.batch_rows * 2)
one = model(1)
rates["finetune (N=1)"] = timed(finetune_phase(one, train, steps, 3e-4, t.batch_rows, 0, t),
                                t.batch_rows)
two = model(2)
rates["finetune (N=2)"] = timed(finetune_phase(two, train, steps, 3e-4, t.batch_rows, 0, t),
                                t.batch_rows * 2)
guide = model(1).eval()
rates["distilled finetune (N=2)"] = timed(
    finetune_phase(two, train, steps, 3e-4, t.batch_rows, 0, t, teacher=guide), t.batch_rows * 2)
for n, teacher in ((1, one), (2, two)):
    student = model(n)
    student.load_state_dict(teacher.state_dict())
    l0 = L0Module(student.arch).to(device)
    phase = pruning_phase(student, teacher.eval(), l0, identity_map(student.arch.hidden_size)
                          .to(device), train, t, steps, steps // 2, 0.6, 0)
    rates[f"prune (N={n})"] = timed(phase, t.batch_rows * n)
small = materialize(student, l0.calibrated(0.6))
rates["post-finetune (N=2, s=0.6)"] = timed(
    finetune_phase(small, train, steps, 3e-4, t.batch_rows, 0, t, teacher=two), t.batch_rows * 2)
start = time.perf_counter()
for _ in range(3):
    accuracy(two, dev, t.batch_rows)
rates["evaluate (N=2)"] = 3 * len(dev) / (time.perf_counter() - start)
print("RATES " + json.dumps(rates))
"""


def probe(root: Path, args: argparse.Namespace) -> dict[str, float]:
    study = str(root / args.study)  # each version's own recipe (a relative path: its copy)
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, study, str(args.steps), str(args.threads), args.device],
        capture_output=True,
        text=True,
        cwd=root,  # `python -c` imports from its working folder first: the version's own code
        env={**_env(), "PYTHONPATH": str(root)},
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("RATES ")), None)
    if line is None:
        sys.exit(f"{root}: the probe failed\n{done.stderr[-2000:]}")
    if f"ENGINE {root}/trainers/" not in done.stderr:  # the version asked for, not another
        sys.exit(f"{root}: the probe imported another engine\n{done.stderr[-500:]}")
    return json.loads(line[len("RATES ") :])


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, type=Path, help="checkout of the old engine")
    parser.add_argument("--study", default="studies/sst2-tiny.toml")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu (both versions) or cuda")
    args = parser.parse_args()
    versions = {"before": args.before.resolve(), "this": ROOT}
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in versions}
    for index in range(args.rounds):
        order = list(versions) if index % 2 == 0 else list(reversed(versions))
        for name in order:
            runs[name].append(probe(versions[name], args))
            rates = " ".join(f"{rate:.1f}" for rate in runs[name][-1].values())
            print(f"round {index + 1}/{args.rounds}: {name} {rates}", file=sys.stderr, flush=True)
    print(f"{'phase':<28} {'before ex/s':>12} {'this ex/s':>10} {'this/before':>12}")
    for phase in runs["this"][0]:
        before = statistics.median(r[phase] for r in runs["before"])
        this = statistics.median(r[phase] for r in runs["this"])
        print(f"{phase:<28} {before:>12.1f} {this:>10.1f} {this / before:>12.3f}")


if __name__ == "__main__":
    main()
