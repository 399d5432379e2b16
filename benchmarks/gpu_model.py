"""A BERT-base-shaped checkpoint with random weights, for the prepared GPU run (no hub there).

    python3 benchmarks/gpu_model.py --tokenizer TOKENIZER_DIR --out FOLDER [--layers 12]

Writes ``FOLDER``: bert-base-uncased's config (12 layers, hidden 768, 12 heads, FFN 3072,
vocabulary 30522), random weights as a masked-LM checkpoint (no classification head: a study
trains one), and the tokenizer files copied from ``TOKENIZER_DIR`` (all-MiniLM-L6-v2's, which
is bert-base-uncased's uncased WordPiece vocabulary). Speed depends on shapes, not weights; a
study on it tokenizes real SST-2 as bert-base-uncased would.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from transformers import BertConfig, BertForMaskedLM

TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def write_model(tokenizer: Path, out: Path, layers: int = 12) -> Path:
    config = BertConfig(num_hidden_layers=layers)  # bert-base-uncased's defaults otherwise
    BertForMaskedLM(config).save_pretrained(out)
    for name in TOKENIZER_FILES:
        if (tokenizer / name).exists():
            shutil.copy(tokenizer / name, out / name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--layers", type=int, default=12)
    args = parser.parse_args()
    print(write_model(args.tokenizer, args.out, args.layers))


if __name__ == "__main__":
    main()
