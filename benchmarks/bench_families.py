"""Every encoder family through the real trial code on the embedded SST-2, on the CPU: a tiny
random-weight model of each trained at (1, 0), (1, 0.5) and (2, 0), then exported to ONNX.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_families.py \
        [--families bert electra roberta xlm-roberta distilbert] [--steps 300] [--hidden 64]

Each family's checkpoint is built by ``tests/support/family_models.save_with_tokenizer``
(``--hidden`` wide, 2 layers, 4 heads, FFN 2 x hidden; ELECTRA's tables hidden / 2 wide,
projected): MiniLM's uncased WordPiece for bert, electra and distilbert, a byte-level BPE
(roberta) or a Unigram (xlm-roberta) trained on SST-2 sentences, vocabulary 2000. Its study is
studies/sst2-tiny.toml (embedded SST-2, 64 tokens, standard multiplexing, mean_hidden pooling,
(2, 0) distilled from (1, 0)) with the model swapped, its word embeddings trained, and short
schedules: ``--steps`` fine-tuning steps, half as many pruning steps (a quarter of those the
Lagrangian warm-up), a quarter as many post-pruning steps and warm-up steps per instance (256
positions and negatives), at rates for random weights (fine-tuning 2e-3, pruning 1e-3), on the
first 10,000 training sentences. Everything goes to a temporary folder, so each run is cold:
(1, 0.5) and (2, 0) reuse the (1, 0) model that (1, 0) trained, and their seconds are their own.

Columns: dev accuracy (872 examples), the achieved sparsity, seconds per phase of the trial
(``TrialResult.phase_seconds``: data = reading and tokenizing SST-2; other = evaluations and
the trial's own throughput timing), the trial's wall time, and the ONNX file's max abs logit
difference from PyTorch (``autoprumux export``'s own check, over 1 and 3 groups). Seconds are
wall time on whatever else the machine runs; compare them within one run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from autoprumux.core.study import Study, read_study_document, study_from_dict
from trainers.deploy.export import ExportFormat, export_model
from trainers.trial.run import TrialSpec, run_trial
from trainers.trial.trial_results import GUIDE_PREFIX, TrialResult

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))
from family_models import FAMILIES, save_with_tokenizer  # noqa: E402

POINTS = ((1, 0.0), (1, 0.5), (2, 0.0))
TRAIN_EXAMPLES = 10_000  # the first of SST-2's 67,349: more than the schedules read
# TrialResult.phase_seconds' spans, as columns; the rest are summed as "other"
PHASES = {"data": "data", "warmup": "warm-up", "finetune": "fine-tune", "prune": "prune"}
PHASES["post-finetune"] = "post"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--steps", type=int, default=300, help="fine-tuning steps")
    parser.add_argument("--hidden", type=int, default=64)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-families-") as scratch:
        for family in args.families:
            folder = Path(scratch) / family
            save_with_tokenizer(
                family,
                folder / "model",
                hidden=args.hidden,
                heads=4,
                intermediate=2 * args.hidden,
                embedding_size=args.hidden // 2 if family == "electra" else 0,
            )
            study = family_study(folder, args.steps)
            for n, s in POINTS:
                result = run_trial(TrialSpec(study=study, n=n, sparsity=s, device="cpu"))
                if result.artifact_path is None:
                    raise SystemExit(
                        f"{family} ({n}, {s:g}): {result.status.value}: {result.reason}"
                    )
                onnx = folder / f"n{n}-s{s:g}.onnx"
                diff = export_model(result.artifact_path, ExportFormat.ONNX, onnx).max_abs_diff
                print(f"{family} ({n}, {s:g}): accuracy {result.accuracy:.4f}", flush=True)
                rows.append(row(family, result, diff))
    print_table(rows, args)


def family_study(folder: Path, steps: int) -> Study:
    """studies/sst2-tiny.toml on the family's checkpoint, with short schedules, in ``folder``."""
    document = read_study_document(ROOT / "studies" / "sst2-tiny.toml")
    document["study"]["description"] = f"bench_families: {folder.name}"
    document["grid"] = {"n": [1, 2], "sparsity": [0.0, 0.5]}
    document["model"] = {"name_or_path": str(folder / "model"), "max_seq_length": 64}
    document["data"]["max_train_examples"] = TRAIN_EXAMPLES
    document["training"].update(
        finetune_steps=steps,
        pruning_steps=steps // 2,
        lagrangian_warmup_steps=steps // 8,
        post_pruning_steps=steps // 4,
        checkpoint_every=steps,
    )
    # random weights learn at rates a pretrained model would not stand, and their word
    # embeddings must learn too (the tiny study freezes a pretrained model's)
    document["training"].update(
        finetune_learning_rate=2e-3, pruning_learning_rate=1e-3, freeze_word_embeddings=False
    )
    document["warmup"].update(steps_per_instance=steps // 4, positions=256, negatives=256)
    document["throughput"] = {"trial_examples_per_pass": 64, "batch_rows": 8}
    return study_from_dict(document, folder / "study.toml")


def row(family: str, result: TrialResult, onnx_diff: float) -> list[str]:
    phases = dict(result.phase_seconds)
    guide = sum(phases.pop(k) for k in list(phases) if k.startswith(GUIDE_PREFIX))
    seconds = [phases.pop(name, 0.0) for name in PHASES]
    seconds[list(PHASES).index("finetune")] += guide  # the (1, 0) guide's, where it ran
    return [
        family,
        f"({result.n}, {result.sparsity:g})",
        f"{result.accuracy:.4f}",
        f"{result.achieved_sparsity:.3f}",
        *(f"{v:.1f}" for v in seconds),
        f"{sum(phases.values()):.1f}",
        f"{result.wall_time_s:.1f}",
        f"{onnx_diff:.1e}",
    ]


def print_table(rows: list[list[str]], args: argparse.Namespace) -> None:
    header = ["family", "(N, s)", "dev acc", "sparsity", *PHASES.values(), "other"]
    header += ["trial s", "ONNX max diff"]
    print(
        f"\n{args.steps} fine-tuning steps, hidden {args.hidden}, 2 layers, 4 heads "
        "(seconds of each phase)\n"
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
