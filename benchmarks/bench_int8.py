"""Trained models in fp32 and int8 on ONNX Runtime, side by side on the CPU: examples/s and dev.

    .venv/bin/python benchmarks/bench_int8.py [--study studies/sst2-tiny.toml] \
        [--folders DIR ...] [--passes 5] [--threads 2] [--static] [--seven-bit] \
        [--check-examples K ...]

Every trained model folder of the study's artifacts (``trial-*`` and ``teacher-*``), or the
``--folders`` given, is exported with ``autoprumux export``'s code into a temporary folder:
fp32 ONNX (checked against PyTorch), then int8 by dynamic quantization
(``trainers.deploy.quantize.quantize_file``), the first recipe of ``export --precision int8``'s
ladder. Each model's line also says which recipe the ladder picks (``make_int8``: the
decided-sample and calibration checks) and how many sample inputs fp32 decides. ``--static``
adds the ladder's first static recipe (QDQ, its worst-quantizing weight layer kept in fp32),
timed and scored beside the others whichever recipe the ladder picks; ``--seven-bit`` adds
dynamic int8 with 7-bit weights (the ladder's second recipe) the same way. ``--check-examples
256 1024`` runs the ladder again checked on the first 256, then 1,024 train examples, and prints
its recipe, each recipe's cost and its seconds for each. The folders are only read: nothing is
recorded in them.

Timing is the throughput harness's (``[throughput]`` of the study; trainers/deploy/timing.py):
a batch is ``batch_rows`` x N random sequences of the model's max length (CLS first, no
padding), about ``examples_per_pass`` examples a pass, ``warmup_passes`` untimed passes, then
``--passes`` timed ones after a discarded one, every (model, precision) round-robin
(``autoprumux.core.harness.time_round_robin``), so both precisions see the same machine load.
Each ONNX Runtime session runs ``--threads`` intra-op threads. Dev: each file classifies the
model's dev examples as ``autoprumux classify`` does, scored in the study's metric.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from autoprumux.core.harness import time_round_robin
from autoprumux.core.study import load_study
from trainers.deploy.export import ExportFormat, export_model
from trainers.deploy.inference import OnnxBackend, TextClassifier, load_text_classifier
from trainers.deploy.model_folder import INFO_FILE, read_info
from trainers.deploy.quantize import (
    DevSet,
    Int8Method,
    compare_on_dev,
    dev_score,
    make_int8,
    prepare,
    quantize_dynamic_file,
    quantize_file,
    recipe_ladder,
    study_examples,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--study", default="studies/sst2-tiny.toml")
    parser.add_argument("--folders", nargs="+", type=Path, help="model folders (default: the "
                        "study's trial-* and teacher-* artifacts)")  # fmt: skip
    parser.add_argument("--passes", type=int, help="timed passes (default: the study's)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--static", action="store_true", help="time and score the first static "
                        "QDQ recipe too")  # fmt: skip
    parser.add_argument("--seven-bit", action="store_true", help="time and score dynamic int8 "
                        "with 7-bit weights too (the ladder's second recipe)")  # fmt: skip
    parser.add_argument("--check-examples", nargs="+", type=int, default=[], metavar="K",
                        help="run the ladder again checked on the first K train examples, "
                        "for each K: its recipe, each recipe's cost, seconds")  # fmt: skip
    args = parser.parse_args()
    study = load_study(args.study)
    settings = study.throughput
    folders = args.folders or sorted(
        p.parent
        for pattern in ("trial-*/" + INFO_FILE, "teacher-*/" + INFO_FILE)
        for p in study.artifacts_folder.glob(pattern)
    )
    if not folders:
        raise SystemExit(f"no trained model folders under {study.artifacts_folder}")
    runs: dict[tuple[Path, str], Callable[[], int]] = {}
    rows, recipes = {}, {}
    others: dict[str, dict[Path, float]] = {"static": {}, "seven": {}}  # dev figures
    ladders: list[str] = []  # --check-examples: a table row per (model, K)
    with tempfile.TemporaryDirectory(prefix="bench-int8-") as scratch:
        for i, folder in enumerate(folders):
            info = read_info(folder)
            fp32_file = Path(scratch) / f"{i}-fp32.onnx"
            int8_file = Path(scratch) / f"{i}-int8.onnx"
            export_model(folder, ExportFormat.ONNX, fp32_file)
            quantize_file(fp32_file, int8_file)
            models = {
                "fp32": _classifier(fp32_file, args.threads),
                "int8": _classifier(int8_file, args.threads),
            }
            dev, calibration = study_examples(info, str(folder / INFO_FILE))
            made = make_int8(fp32_file, Path(scratch) / f"{i}-ladder.onnx", calibration)
            passed = made.tried[-1]
            picked = f"{made.recipe}, {passed.decided} of {passed.samples} samples decided"
            for check in made.tried[:-1]:  # each recipe refused first, with its figures
                print(f"  refused: {check}", flush=True)
            for k in args.check_examples:
                ladders.append(f"| {folder.name} | {_ladder_on(fp32_file, calibration, k)} |")
            if args.static or args.seven_bit:  # ORT's pre-processing, once for both
                prepared = prepare(fp32_file, Path(scratch) / f"{i}-prepared.onnx")
            if args.static:
                static_file = Path(scratch) / f"{i}-static.onnx"
                _first_static(fp32_file, prepared, models["fp32"], calibration, static_file)
                models["static"] = _classifier(static_file, args.threads)
                others["static"][folder] = dev_score(models["static"], dev)
            if args.seven_bit:
                seven_file = Path(scratch) / f"{i}-seven.onnx"
                quantize_dynamic_file(prepared, seven_file, seven_bits=True)
                models["seven"] = _classifier(seven_file, args.threads)
                others["seven"][folder] = dev_score(models["seven"], dev)
            comparison = compare_on_dev(models["fp32"], models["int8"], dev)
            fp32_labels = [p.label for p in models["fp32"].predict(dev.texts)]
            int8_labels = [p.label for p in models["int8"].predict(dev.texts)]
            same = sum(a == b for a, b in zip(fp32_labels, int8_labels, strict=True))
            size = int8_file.stat().st_size / fp32_file.stat().st_size
            rows[folder] = (info, comparison, same / len(dev.texts), size)
            recipes[folder] = picked
            for precision, model in models.items():
                runs[folder, precision] = _pass(
                    model, settings.batch_rows, settings.examples_per_pass
                )
            print(
                f"{folder.name}: {info.point}, fp32 {fp32_file.stat().st_size / 1e6:.1f} MB, "
                f"int8 {int8_file.stat().st_size / 1e6:.1f} MB; dev {comparison.metric_label} "
                f"fp32 {comparison.fp32:.4f}, int8 {comparison.int8:.4f}; the ladder picks "
                f"{picked}",
                flush=True,
            )
        passes = args.passes or settings.passes
        timings = time_round_robin(
            runs,
            passes,
            settings.warmup_passes,
            progress=lambda done, total: print(f"pass {done}/{total}", flush=True),
        )
    print(
        f"\nONNX Runtime on the CPU, {args.threads} threads; batches of {settings.batch_rows} x N "
        f"sequences, ~{settings.examples_per_pass} examples a pass, {passes} timed passes "
        "round-robin (median); dev: the model's dev examples, in its study's metric\n"
    )
    print(
        "| model | N | s | fp32 ex/s | int8 ex/s | speedup | fp32 dev | int8 dev | delta "
        "(points) | labels kept | int8 bytes |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for folder, (info, comparison, kept, size) in rows.items():
        fp32, int8 = timings[folder, "fp32"].median, timings[folder, "int8"].median
        print(
            f"| {folder.name} | {info.n} | {info.sparsity:g} | {fp32:,.0f} | {int8:,.0f} "
            f"| {int8 / fp32:.2f}x | {comparison.fp32:.4f} | {comparison.int8:.4f} "
            f"| {comparison.delta_points:+.2f} | {100 * kept:.1f} % | {size:.2f}x |"
        )
    print("\n| model | the ladder's recipe |\n|---|---|")
    for folder, picked in recipes.items():
        print(f"| {folder.name} | {picked} |")
    if ladders:
        print("\n| model | checked on | the ladder's recipe | each recipe's cost (points) "
              "| ladder seconds |\n|---|---|---|---|---|")  # fmt: skip
        print("\n".join(ladders))
    for name, words in (("static", "static QDQ"), ("seven", "7-bit dynamic")):
        if not others[name]:
            continue
        print(f"\n| model | {words} ex/s | vs dynamic | vs fp32 | its dev | delta (points) |")
        print("|---|---|---|---|---|---|")
        for folder, figure in others[name].items():
            fp32, int8 = timings[folder, "fp32"].median, timings[folder, "int8"].median
            other = timings[folder, name].median
            delta = 100 * (figure - rows[folder][1].fp32)
            print(
                f"| {folder.name} | {other:,.0f} | {other / int8:.2f}x | {other / fp32:.2f}x "
                f"| {figure:.4f} | {delta:+.2f} |"
            )


def _ladder_on(fp32_file: Path, calibration: DevSet, examples: int) -> str:
    """The ladder checked on the first ``examples`` calibration examples: its recipe, each
    recipe's accuracy cost on them and the seconds it took (a table row's cells)."""
    first = DevSet(texts=calibration.texts[:examples], labels=calibration.labels[:examples])
    with tempfile.TemporaryDirectory(prefix="bench-int8-ladder-") as scratch:
        started = time.perf_counter()
        made = make_int8(fp32_file, Path(scratch) / "int8.onnx", first)
        seconds = time.perf_counter() - started
    costs = ", ".join(f"{0.0 - 100 * c.cost:+.2f}" for c in made.tried)
    return f"{len(first.labels)} | {made.recipe} | {costs} | {seconds:.1f}"


def _first_static(
    fp32_file: Path, prepared: Path, fp32: TextClassifier, calibration: DevSet, out: Path
) -> None:
    """The ladder's first static recipe written at ``out``, whatever the checks say."""
    ladder = recipe_ladder(fp32_file, prepared, fp32, calibration)
    recipe, write = next(s for s in ladder if s[0].method is Int8Method.STATIC_QDQ)
    write(out)
    print(f"  static: {recipe}", flush=True)


def _classifier(path: Path, threads: int) -> TextClassifier:
    """The file as ``classify`` loads it, run by a session of ``threads`` intra-op threads."""
    import onnxruntime as ort

    model = load_text_classifier(path, device="cpu")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    model.backend = OnnxBackend(
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    )
    return model


def _pass(model: TextClassifier, batch_rows: int, examples_per_pass: int) -> Callable[[], int]:
    """One pass of the throughput harness: [batch_rows, N, L] random tokens a batch."""
    width, length = model.info.n, model.info.max_length
    generator = np.random.default_rng(0)
    ids = generator.integers(0, len(model.tokenizer), (batch_rows, width, length), dtype=np.int64)
    ids[:, :, 0] = model.tokenizer.cls_token_id
    feeds = {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "token_type_ids": np.zeros_like(ids),
    }
    batches = max(1, math.ceil(examples_per_pass / (batch_rows * width)))
    session = model.backend.session  # type: ignore[attr-defined]

    def run() -> int:
        for _ in range(batches):
            session.run(["logits"], feeds)
        return batches * batch_rows * width

    return run


if __name__ == "__main__":
    main()
