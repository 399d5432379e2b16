"""How much a prediction depends on what it is served with: the other inputs of its
multiplexed group (N > 1), and its batch in int8 (ONNX Runtime's dynamic quantization scales
activations per batch).

    .venv/bin/python benchmarks/bench_group_effect.py --folders DIR [DIR ...] \
        [--shuffles 8] [--copies 6] [--batches 1 8 32 64]

For each model folder, on its study's dev examples (read as ``export --precision int8`` reads
them: the folder's study file must be where it recorded it):

- groups: dev classified in the dev file's order (the order its recorded dev figure is of),
  then in ``--shuffles`` random orders (seeds 0, 1, ...): the dev figure in each order, the
  share of dev texts whose label differs from the dev-order one, and the largest change of a
  probability; then one file holding every dev text ``--copies`` times in a random order: the
  share of texts whose copies are not all given the same label. A model of N = 1 in fp32
  computes each input alone: its shares are 0 (the check that the harness is sound).
- int8: the folder exported to ONNX and quantized dynamically (the first recipe of
  ``export --precision int8``'s ladder), classified at each ``--batches`` (groups of N per
  forward pass): the dev figure at each, and the share of labels that differ from the first
  batch size's.

Nothing is timed, so the figures do not depend on the machine's load. The folders are only
read.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from trainers.deploy.export import ExportFormat, export_model
from trainers.deploy.inference import PredictedLabel, TextClassifier, load_text_classifier
from trainers.deploy.model_folder import INFO_FILE, read_info
from trainers.deploy.quantize import DevSet, predictions_score, quantize_file, study_examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folders", nargs="+", type=Path, required=True)
    parser.add_argument("--shuffles", type=int, default=8)
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 1, 8, 64])
    args = parser.parse_args()
    print(
        "| model | N | s | dev order | shuffled (min-max) | labels changed (mean, max) "
        "| largest probability change | texts labelled unlike their copies |"
    )
    print("|---|---|---|---|---|---|---|---|")
    int8_lines = []
    for folder in args.folders:
        info = read_info(folder)
        dev, _ = study_examples(info, str(folder / INFO_FILE))
        model = load_text_classifier(folder, device="cpu")
        print(_groups_line(folder.name, model, dev, args.shuffles, args.copies), flush=True)
        with tempfile.TemporaryDirectory() as scratch:
            fp32_file, int8_file = Path(scratch) / "fp32.onnx", Path(scratch) / "int8.onnx"
            export_model(folder, ExportFormat.ONNX, fp32_file)
            quantize_file(fp32_file, int8_file)
            int8 = load_text_classifier(int8_file, device="cpu")
            int8_lines.append(_int8_line(folder.name, int8, dev, args.batches))
    print(f"\n| model (int8, dynamic) | {' | '.join(f'batch {b}' for b in args.batches)} |")
    print(f"|---|{'---|' * len(args.batches)}")
    print("\n".join(int8_lines))


def _groups_line(name: str, model: TextClassifier, dev: DevSet, shuffles: int, copies: int) -> str:
    """One table row: the dev figure in dev order and shuffled, what changes between them."""
    info, texts = model.info, list(dev.texts)
    in_order = model.predict(texts)
    figures, changed, moved = [], [], 0.0
    for seed in range(shuffles):
        order = np.random.default_rng(seed).permutation(len(texts))
        shuffled = model.predict([texts[i] for i in order])
        back = [PredictedLabel(label="", probabilities={})] * len(texts)
        for position, i in enumerate(order):
            back[i] = shuffled[position]  # each text's prediction, back in dev order
        figures.append(_score(model, dev, back))
        changed.append(_share_changed(in_order, back))
        moved = max(moved, _largest_change(in_order, back))
    repeated = _share_unlike_copies(model, texts, copies)
    return (
        f"| {name} | {info.n} | {info.sparsity:g} | {_score(model, dev, in_order):.4f} "
        f"| {min(figures):.4f}-{max(figures):.4f} "
        f"| {100 * float(np.mean(changed)):.1f} %, {100 * max(changed):.1f} % | {moved:.3f} "
        f"| {100 * repeated:.1f} % |"
    )


def _int8_line(name: str, model: TextClassifier, dev: DevSet, batches: Sequence[int]) -> str:
    """One table row: the int8 file's dev figure at each batch size, and the share of labels
    that differ from the first size's."""
    texts = list(dev.texts)
    first = model.predict(texts, batch=batches[0])
    cells = [f"{_score(model, dev, first):.4f}"]
    for batch in batches[1:]:
        predicted = model.predict(texts, batch=batch)
        cells.append(
            f"{_score(model, dev, predicted):.4f} "
            f"({100 * _share_changed(first, predicted):.1f} % changed)"
        )
    return f"| {name} | {' | '.join(cells)} |"


def _score(model: TextClassifier, dev: DevSet, predicted: Sequence[PredictedLabel]) -> float:
    """The study's metric of ``predicted`` (in dev order)."""
    return predictions_score(model.info, dev, predicted)


def _share_changed(a: Sequence[PredictedLabel], b: Sequence[PredictedLabel]) -> float:
    return sum(x.label != y.label for x, y in zip(a, b, strict=True)) / len(a)


def _largest_change(a: Sequence[PredictedLabel], b: Sequence[PredictedLabel]) -> float:
    return max(
        abs(x.probabilities[label] - y.probabilities[label])
        for x, y in zip(a, b, strict=True)
        for label in x.probabilities
    )


def _share_unlike_copies(model: TextClassifier, texts: list[str], copies: int) -> float:
    """The share of texts whose ``copies`` copies, shuffled among all the others' in one
    file, are not all given the same label."""
    rows = np.random.default_rng(0).permutation(np.repeat(np.arange(len(texts)), copies))
    predicted = model.predict([texts[i] for i in rows])
    labels: list[set[str]] = [set() for _ in texts]
    for i, prediction in zip(rows, predicted, strict=True):
        labels[i].add(prediction.label)
    return sum(len(seen) > 1 for seen in labels) / len(texts)


if __name__ == "__main__":
    main()
