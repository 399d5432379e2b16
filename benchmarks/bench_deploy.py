"""SST-2 dev through trained models, PyTorch and ONNX Runtime side by side: accuracy, inputs/s.

    .venv/bin/python benchmarks/bench_deploy.py [--study studies/sst2-tiny.toml] \
        [--points 1,0 2,0.5 4,0] [--rounds 5] [--batch 32]

Each point is ``run_trial`` (a trained point is found in studies/artifacts and only re-described;
a missing one is trained first), exported to ONNX with ``autoprumux export``'s code, and both
forms classify the whole dev table the way ``autoprumux classify`` does. The rounds go
round-robin over every (point, runtime), so both runtimes see the same machine load; the table
gives the median of the rounds. "end to end" includes tokenizing and grouping; "forward" is the
forward passes alone. Runs on the CPU (ONNX Runtime's CPU provider, torch with every core).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from autoprumux.cli.classify_io import InputSpec, accuracy, read_inputs
from autoprumux.core.study import load_study
from trainers.deploy.export import ExportFormat, export_model
from trainers.deploy.inference import load_text_classifier
from trainers.trial.run import TrialSpec, run_trial


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--study", default="studies/sst2-tiny.toml")
    parser.add_argument("--points", nargs="+", default=["1,0", "2,0.5", "4,0"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32, help="groups of N per forward pass")
    args = parser.parse_args()
    study = load_study(args.study)
    # the TSV file `autoprumux classify` reads; the study's own SST-2 may be the .xz inside
    # autoprumux (byte-identical, tests/autoprumux/test_embedded.py)
    dev_tsv = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue" / "SST-2" / "dev.tsv"
    runners, recorded = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for text in args.points:
            n, s = text.split(",")
            result = run_trial(TrialSpec(study=study, n=int(n), sparsity=float(s), device="cpu"))
            point = (result.n, result.sparsity)
            recorded[point] = result.accuracy
            onnx_file = Path(scratch) / f"n{result.n}-s{result.sparsity:g}.onnx"
            exported = export_model(result.artifact_path, ExportFormat.ONNX, onnx_file)
            print(
                f"{point}: {result.artifact_path}; ONNX {exported.bytes / 1e6:.1f} MB, "
                f"logits within {exported.max_abs_diff:.1e}",
                flush=True,
            )
            runners[(point, "PyTorch")] = load_text_classifier(result.artifact_path, "cpu")
            runners[(point, "ONNX Runtime")] = load_text_classifier(onnx_file, "cpu")
        info = next(iter(runners.values())).info
        spec = InputSpec(
            text_columns=info.text_columns, label_column=info.label_column, labels=info.labels
        )
        inputs = read_inputs(str(dev_tsv), spec)
        timings: dict[tuple, list[tuple[float, float]]] = {key: [] for key in runners}
        accuracies = {}
        for round_ in range(1, args.rounds + 1):
            for key, runner in runners.items():
                done = runner.classify(inputs.texts, args.batch)
                timings[key].append((done.seconds, done.model_seconds))
                predicted = [p.label for p in done.predictions]
                accuracies[key] = accuracy(inputs, predicted, runner.info.labels)
            print(f"round {round_}/{args.rounds} done", flush=True)
    count = len(inputs.texts)
    print(f"\nSST-2 dev, {count} sentences, {args.rounds} rounds round-robin, medians:\n")
    print(
        "| (N, s) | runtime | accuracy | trial's recorded | inputs/s end to end "
        "| inputs/s forward | forward vs PyTorch |"
    )
    print("|---|---|---|---|---|---|---|")
    for (point, runtime), rounds in timings.items():
        end_to_end = count / statistics.median(t for t, _ in rounds)
        forward = count / statistics.median(m for _, m in rounds)
        torch_forward = count / statistics.median(m for _, m in timings[(point, "PyTorch")])
        print(
            f"| ({point[0]}, {point[1]:g}) | {runtime} | {accuracies[(point, runtime)]:.4f} "
            f"| {recorded[point]:.4f} | {end_to_end:,.0f} | {forward:,.0f} "
            f"| {forward / torch_forward:.2f}x |"
        )


if __name__ == "__main__":
    main()
