"""Studies of one's own data, written from what autoprumux ships, for the measurements of
docs/measurements.md (nothing here is committed data: every file is generated):

- ``sst2-csv``: the embedded SST-2 re-dressed as CSV files with the columns ``review`` and
  ``sentiment`` and the labels ``neg`` and ``pos``: its (1, 0) model must have the dev accuracy
  of the tiny study's (the GLUE preset), to the sentence.
- ``tickets``: a 4-label task (support tickets: billing, delivery, login, refund) in JSON Lines,
  generated from templates with a seed; 10 % of the labels are drawn at random, so the best
  possible accuracy is about 0.925.
- ``sst2-pairs``: a pair task on real text: an SST-2 review and an excerpt of 3 to 6 words,
  ``quoted`` from it or taken from another review (``unrelated``), in Parquet; its dev pairs
  come from SST-2's dev set. (A first try, "do two reviews share a sentiment", stayed at the
  majority class after 1,200 steps of the tiny study: an XOR of two sentiments.)

    python benchmarks/own_data_examples.py OUT_DIR

writes ``OUT_DIR/<name>/`` with the data and ``<name>.toml`` (the tiny study's model and recipe,
``[data]`` pointing at the files), and prints the majority-class share of each dev split. Train
the (1, 0) model of each with ``autoprumux train --study OUT_DIR/<name>/<name>.toml --n 1
--sparsity 0``.
"""

from __future__ import annotations

import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]

TICKETS = {
    "billing": [
        "i was charged twice for my {item}",
        "why is there an extra fee on my {item} invoice",
        "the bill for {item} is higher than the price you showed",
        "please explain the {item} charge on my card this {when}",
    ],
    "delivery": [
        "my {item} has not arrived yet",
        "where is the {item} i ordered last {when}",
        "the courier left my {item} at the wrong address",
        "tracking for my {item} has not moved since {when}",
    ],
    "login": [
        "i cannot sign in to my account since {when}",
        "the password reset email never comes",
        "my account is locked after i updated the {item} app",
        "two factor code is rejected every time since {when}",
    ],
    "refund": [
        "i returned the {item} and want my money back",
        "when will the refund for my {item} reach my card",
        "i cancelled the {item} order {when}, please refund it",
        "the {item} was broken, i would like a refund not a replacement",
    ],
}
ITEMS = ["headphones", "laptop", "subscription", "jacket", "phone case", "coffee maker", "tickets"]
WHEN = ["monday", "last week", "yesterday", "this morning", "two days ago", "march"]
NOISE = 0.10  # the share of labels drawn at random


def tickets(rows: int, rng: random.Random) -> list[dict[str, str]]:
    labels = sorted(TICKETS)
    out = []
    for _ in range(rows):
        label = rng.choice(labels)
        text = rng.choice(TICKETS[label]).format(item=rng.choice(ITEMS), when=rng.choice(WHEN))
        if rng.random() < 0.5:
            text = rng.choice(["hi, ", "hello. ", "urgent: ", ""]) + text
        out.append({"text": text, "intent": rng.choice(labels) if rng.random() < NOISE else label})
    return out


def sst2_pairs(rows: int, table: pa.Table, rng: random.Random) -> pa.Table:
    """Pairs of real sentences: a review of 8 words or more, and 3 to 6 consecutive words that
    are ``quoted`` from it or, half the time, taken from another review (``unrelated``)."""
    texts = [t for t in table["text"].to_pylist() if len(t.split()) >= 8]
    first, second, label = [], [], []
    for _ in range(rows):
        review = rng.choice(texts)
        quoted = rng.random() < 0.5
        source = (review if quoted else rng.choice(texts)).split()
        width = rng.randint(3, 6)
        start = rng.randrange(len(source) - width + 1)
        first.append(review)
        second.append(" ".join(source[start : start + width]))
        label.append("quoted" if quoted else "unrelated")
    return pa.table({"review": first, "excerpt": second, "relation": label})


def study_text(data: str) -> str:
    """The tiny study with its ``[study]`` and ``[data]`` replaced by the given data's."""
    text = (ROOT / "studies" / "sst2-tiny.toml").read_text()
    text = re.sub(r"\[study\]\n(.*\n)*?\n", "[study]\nseed = 0\n\n", text, count=1)
    return re.sub(r"\[data\]\n(.*\n)*?\n", f"[data]\n{data}\n", text, count=1)


def majority(labels: list[str]) -> str:
    label, count = Counter(labels).most_common(1)[0]
    return f"{label} {count / len(labels):.4f}"


def main(out: Path) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from glue_tables import preset_tables

    sst2 = preset_tables(ROOT / "autoprumux" / "embedded" / "glue")
    folder = out / "sst2-csv"
    folder.mkdir(parents=True, exist_ok=True)
    for split, table in (("train", sst2.train), ("dev", sst2.dev)):
        names = pa.array(["neg", "pos"]).take(table["label"])
        pa_csv.write_csv(
            pa.table({"review": table["text"], "sentiment": names}), folder / f"{split}.csv"
        )
    (folder / "sst2-csv.toml").write_text(
        study_text('train = "train.csv"\ndev = "dev.csv"\ntext = "review"\nlabel = "sentiment"\n')
    )

    rng = random.Random(0)
    folder = out / "tickets"
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", 8000), ("dev", 800)):
        lines = tickets(rows, rng)
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
        if split == "dev":
            print(f"tickets: dev majority class {majority([r['intent'] for r in lines])}")
    (folder / "tickets.toml").write_text(
        study_text('train = "train.jsonl"\ndev = "dev.jsonl"\ntext = "text"\nlabel = "intent"\n')
    )

    folder = out / "sst2-pairs"
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows, source in (("train", 40_000, sst2.train), ("dev", 872, sst2.dev)):
        pairs = sst2_pairs(rows, source, rng)
        pq.write_table(pairs, folder / f"{split}.parquet")
        if split == "dev":
            print(f"sst2-pairs: dev majority class {majority(pairs['relation'].to_pylist())}")
    (folder / "sst2-pairs.toml").write_text(
        study_text(
            'train = "train.parquet"\ndev = "dev.parquet"\ntext = "review"\n'
            'text_pair = "excerpt"\nlabel = "relation"\n'
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
