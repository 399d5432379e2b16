"""A tiny random BERT with its own tokenizer, GLUE-format fixtures and a study that uses them:
the whole training engine runs on these in seconds."""

from __future__ import annotations

import random
from pathlib import Path

import torch

POSITIVE = ["good", "great", "fun", "lovely", "superb", "moving", "bright", "warm"]
NEGATIVE = ["bad", "awful", "boring", "dull", "poor", "weak", "cold", "flat"]
NEUTRAL = ["the", "film", "movie", "plot", "was", "is", "a", "very", "and", "story", "cast", "it"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = SPECIAL + POSITIVE + NEGATIVE + NEUTRAL + ["what", "why", "who", "?", "yes", "no"]


def make_tiny_model(folder: Path, layers: int = 2, hidden: int = 32) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertTokenizerFast(vocab={word: i for i, word in enumerate(VOCAB)})
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    BertModel(config).save_pretrained(folder)
    return folder


def sentence(rng: random.Random, label: int) -> str:
    words = [rng.choice(NEUTRAL) for _ in range(rng.randint(3, 7))]
    for _ in range(rng.randint(1, 2)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label else NEGATIVE))
    return " ".join(words)


def make_glue(folder: Path, train_rows: int = 512, dev_rows: int = 64) -> Path:
    """SST-2 (learnable: the label is the sentiment word), MNLI, QNLI and QQP in GLUE's layout."""
    rng = random.Random(0)

    def write(task: str, name: str, header: list[str], rows: list[list[str]]) -> None:
        path = folder / task / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")

    for name, count in (("train.tsv", train_rows), ("dev.tsv", dev_rows)):
        labels = [rng.randint(0, 1) for _ in range(count)]
        write("SST-2", name, ["sentence", "label"], [[sentence(rng, y), str(y)] for y in labels])
    mnli_header = [
        "index",
        "promptID",
        "pairID",
        "genre",
        "sentence1",
        "sentence2",
        "label1",
        "gold_label",
    ]
    gold = ["entailment", "neutral", "contradiction"]
    for name in ("train.tsv", "dev_matched.tsv"):
        write(
            "MNLI",
            name,
            mnli_header,
            [
                [
                    str(i),
                    "0",
                    "0",
                    "fiction",
                    sentence(rng, 1),
                    sentence(rng, 0),
                    gold[i % 3],
                    gold[i % 3],
                ]
                for i in range(12)
            ],
        )
    for name in ("train.tsv", "dev.tsv"):
        write(
            "QNLI",
            name,
            ["index", "question", "sentence", "label"],
            [
                [str(i), "what is it ?", sentence(rng, 1), ["entailment", "not_entailment"][i % 2]]
                for i in range(10)
            ],
        )
        write(
            "QQP",
            name,
            ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
            [[str(i), "1", "2", "who is it ?", "why is it ?", str(i % 2)] for i in range(10)],
        )
    return folder


def study_text(
    model: Path, glue: Path, precisions: str | None = '["fp32"]', **training: object
) -> str:
    """A tiny study of ``model`` on the GLUE folder ``glue``; ``precisions``: its ``[deploy]
    precisions`` as TOML (fp32 alone unless asked: an int8 evaluation exports and quantizes
    every trained model, seconds each; None leaves the section out, the device's defaults)."""
    settings = {
        "finetune_steps": 60,
        "pruning_steps": 40,
        "lagrangian_warmup_steps": 20,
        "post_pruning_steps": 20,
        "batch_rows": 8,
        "finetune_learning_rate": 3e-3,
        "pruning_learning_rate": 1e-3,
        "l0_learning_rate": 0.1,
        "lagrangian_learning_rate": 0.1,
        "checkpoint_every": 10,
        **training,
    }
    lines = "\n".join(  # TOML: true / false, strings and numbers as Python writes them
        f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}" for k, v in settings.items()
    )
    return f"""
[study]
task = "sst2"
seed = 0

[grid]
n = [1, 2]
sparsity = [0.0, 0.5]

[model]
name_or_path = "{model}"
max_seq_length = 16

[data]
source = "glue_dir"
glue_dir = "{glue}"

[training]
{lines}

[warmup]
steps_per_instance = 10
batch_rows = 8
max_length = 16
positions = 64
negatives = 32
learning_rate = 3e-3
new_learning_rate = 3e-3

[throughput]
batch_rows = 8
examples_per_pass = 32
trial_examples_per_pass = 16
passes = 2
""" + ("" if precisions is None else f"\n[deploy]\nprecisions = {precisions}\n")


def one_line_error(capsys, argv, *expected):  # type: ignore[no-untyped-def]
    """``autoprumux argv`` exits 2 with one line on stderr holding each of ``expected``."""
    from autoprumux.cli.main import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for text in expected:
        assert text in err, err
    return err
