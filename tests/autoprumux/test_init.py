"""``autoprumux init`` (autoprumux.cli.init_command, autoprumux.session.study_writer): from a
data file to a study file that loads and whose data load, with the columns, lengths and steps
it chose said and written; the plan printed as ``search --dry-run`` prints it; every bad input
one line, exit 2, nothing written."""

import datetime
import json
import math
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from autoprumux.cli.main import main
from autoprumux.core.data_spec import data_spec
from autoprumux.core.study import FineTuned, TrainingSection, load_study
from autoprumux.files.results_io import read_throughput_table
from autoprumux.files.toml_text import toml_text
from autoprumux.session import dry_run
from autoprumux.session.dry_run import TableUsed
from autoprumux.session.recipe_scaling import scale_recipe
from trainers.data.inspect import SEQ_LENGTHS
from trainers.data.tables import load_tables

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "studies" / "sst2-tiny.toml"
PAPER = ROOT / "studies" / "sst2.toml"
TINY_TABLE = ROOT / "studies" / "throughput" / "sst2-tiny-cpu-float32.json"
sys.path.insert(0, str(ROOT / "tests" / "trainers"))  # fixtures.py: the tiny model

from fixtures import make_tiny_model  # noqa: E402

WORDS = {"pos": ["good", "great", "fun"], "neg": ["bad", "dull", "poor"]}


@pytest.fixture(autouse=True)
def cpu_machine(monkeypatch):
    """This machine has no GPU: init writes the CPU study (studies/sst2-tiny.toml's)."""
    from autoprumux.cli import default_study

    monkeypatch.setattr(default_study, "cuda_available", lambda: False)


@pytest.fixture
def committed_table(monkeypatch):
    """The plan priced by the tiny study's committed table instead of timing every point."""

    def estimate(study, missing, say):
        table = read_throughput_table(TINY_TABLE)
        return table, TableUsed(source="the committed table", device="cpu", estimated=True)

    monkeypatch.setattr(dry_run, "estimate_table", estimate)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


def write_reviews(path: Path, rows: int = 60, header: str = "id,review,sentiment") -> Path:
    """An id, a review and its sentiment (neg/pos, alternating)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [header]
    for i in range(rows):
        label = "pos" if i % 2 else "neg"
        lines.append(f"{i},the film {i} was very {WORDS[label][i % 3]},{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def init(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["init", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_init_writes_a_study_that_loads_and_whose_data_load(tmp_path, capsys, committed_table):
    # 144 training rows: a batch of N = 4 (32 rows x 4) fits, so the template's grid is kept
    data = write_reviews(tmp_path / "data" / "reviews.csv", rows=160)
    out = tmp_path / "studies" / "reviews.toml"  # its folder does not exist yet
    code, printed, _ = init(capsys, "--train", str(data), "--out", str(out))
    assert code == 0
    study = load_study(out)
    assert study.task == "reviews" and study.study.task == ""
    assert study.data.train == "../data/reviews.csv"  # relative to the study's folder
    assert (study.data.text, study.data.text_pair, study.data.label) == ("review", "", "sentiment")
    tables = load_tables(data_spec(study))
    assert tables.label_names == ("neg", "pos")
    assert (tables.train.num_rows, tables.dev.num_rows) == (144, 16)  # 10% carved as dev
    # the template's grid, model and settings; its task and data replaced
    template = load_study(TINY)
    assert study.grid == template.grid and study.multiplexing == template.multiplexing
    assert study.model.name_or_path == template.model.name_or_path
    assert study.model.num_layers == template.model.num_layers
    assert study.study.seed == template.study.seed
    # max_seq_length: the smallest length holding 99% of the rows, from the tokenizer itself
    from trainers.model.checkpoints import load_tokenizer

    tokenizer = load_tokenizer(study.model.name_or_path)
    reviews = [line.split(",")[1] for line in data.read_text().splitlines()[1:]]
    lengths = [len(tokenizer(review)["input_ids"]) for review in reviews]
    assert study.model.max_seq_length == min(
        c for c in SEQ_LENGTHS if sum(n <= c for n in lengths) >= 0.99 * len(lengths)
    )
    # 3 epochs of 144 rows is under the fewest steps (300), the other phases scaled alike
    finetune = max(min(round(3 * 144 / 32), 1200), 300)
    t = template.training
    assert (study.training.finetune_steps, study.training.pruning_steps) == (
        finetune,
        round(t.pruning_steps * finetune / t.finetune_steps),
    )
    assert study.training.lagrangian_warmup_steps == round(
        t.lagrangian_warmup_steps * finetune / t.finetune_steps
    )
    assert study.training.finetune_learning_rate == t.finetune_learning_rate
    lines = printed.splitlines()
    assert "label: 'sentiment' (2 distinct values, named like a label)" in lines
    assert any(line.startswith("text: 'review' (the longest text column, ") for line in lines)
    assert "rows: train 144, dev 16 (carved from train: 10%, at most 5,000)" in printed
    assert any(line.split() == ["neg", "72", "50.0%"] for line in lines)
    tokens = f"tokens ({template.model.name_or_path}'s tokenizer, all 160 train and dev rows)"
    assert tokens in printed
    assert "dry run: study 'reviews', absolute budget 0.03 (accuracy), 18 grid points" in printed
    assert "first picks" in printed
    assert lines[-1] == f"search it: autoprumux search --study {out} --budget 0.03"
    # what the file says: who wrote it and when, what each section is
    text = out.read_text()
    today = datetime.date.today()
    assert text.startswith(
        f"# Written by autoprumux init on {today} for reviews.csv ([data] train)."
    )
    file_lines = text.splitlines()
    for k, line in enumerate(file_lines):
        if line.startswith("["):
            assert file_lines[k - 1].startswith("# "), line
    assert 'text = "review"  # the longest text column' in text
    # written: the study only (the plan writes nothing: no database, no table, no report)
    assert tree(tmp_path) == ["data", "data/reviews.csv", "studies", "studies/reviews.toml"]


def test_a_local_model_is_named_absolute_and_bounds_the_length(
    tmp_path, capsys, monkeypatch, committed_table, tiny_model
):
    """99 rows of 5 words and 1 of 300: 32 tokens hold 99% of them (the 1% is the long row);
    the model folder is written absolute (the study reads its model from the current folder),
    without the template model's own settings."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_model, tmp_path / "tiny")
    rows = [f"{i},the film was very good,{'pos' if i % 2 else 'neg'}" for i in range(99)]
    rows.append("99," + " ".join(["bad"] * 300) + ",neg")
    (tmp_path / "r.csv").write_text("id,review,sentiment\n" + "\n".join(rows) + "\n")
    code, printed, _ = init(capsys, "--train", "r.csv", "--model", "tiny", "--out", "r.toml")
    assert code == 0
    study = load_study(tmp_path / "r.toml")
    assert study.model.name_or_path == str((tmp_path / "tiny").resolve())
    assert study.model.num_layers == 0  # the template's 2 layers are its MiniLM's
    from trainers.model.checkpoints import load_tokenizer

    tokenizer = load_tokenizer("tiny")
    assert len(tokenizer("the film was very good")["input_ids"]) == 7 <= 32
    assert len(tokenizer(" ".join(["bad"] * 300))["input_ids"]) == 302
    assert study.model.max_seq_length == 32
    # the tiny model has 64 positions: 128 and above are not offered
    assert (
        "max_seq_length: 32 (the smallest of 32, 64 that holds 99.0% of the rows whole; 1.0% "
        "would be truncated)" in printed
    )
    assert study.data.train == "r.csv"


def test_a_pair_task_from_a_given_second_text(tmp_path, capsys, committed_table):
    lines = ["claim,evidence,verdict"] + [
        f"claim {i},the long evidence that claim {i} is {'good' if i % 2 else 'bad'},"
        f"{'yes' if i % 2 else 'no'}"
        for i in range(40)
    ]
    (tmp_path / "p.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "p.toml"
    code, printed, _ = init(
        capsys, "--train", str(tmp_path / "p.csv"), "--text-pair", "claim", "--out", str(out)
    )
    assert code == 0
    study = load_study(out)
    assert (study.data.text, study.data.text_pair, study.data.label) == (
        "evidence",
        "claim",
        "verdict",
    )
    assert load_tables(data_spec(study)).is_pair
    assert "text_pair: 'claim' (given: a pair task)" in printed


def test_a_second_text_left_out_is_a_note_and_text_pair_makes_the_pair(
    tmp_path, capsys, committed_table
):
    """A sentence-pair file whose columns are not named as a pair: init trains on the longer
    text, and a note names the other and --text-pair; given, the study is a pair task."""
    rows = [
        f"the first sentence number {i} of the pair\tthe second one {i} of it\t"
        f"{'same' if i % 2 else 'other'}"
        for i in range(60)
    ]
    data = tmp_path / "lr_train.tsv"
    data.write_text("left\tright\trelation\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "lr.toml"
    code, printed, _ = init(capsys, "--train", str(data), "--out", str(out))
    assert code == 0
    study = load_study(out)
    assert (study.data.text, study.data.text_pair) == ("left", "")
    # "the second one {i} of it": 22 characters for i < 10, 23 for the 50 others: 22.83
    assert (
        "note: column 'right' also holds text (23 characters on average) and is left out; for "
        "a sentence-pair task give --text-pair right" in printed.splitlines()
    )
    code, printed, _ = init(
        capsys, "--train", str(data), "--text-pair", "right", "--out", str(out), "--force"
    )
    assert code == 0
    study = load_study(out)
    assert (study.data.text, study.data.text_pair) == ("left", "right")
    assert "also holds text" not in printed


def test_a_cpu_study_on_a_gpu_machine_searches_on_the_cpu_with_the_budget_given(
    tmp_path, capsys, monkeypatch, committed_table
):
    """--device cpu where a GPU is present: the tiny study, and a search (and its plan) told to
    leave the GPU alone; the budget given is the plan's and the command's."""
    from autoprumux.cli import default_study

    monkeypatch.setattr(default_study, "cuda_available", lambda: True)
    data = write_reviews(tmp_path / "reviews.csv", rows=160)
    out = tmp_path / "r.toml"
    code, printed, _ = init(
        capsys, "--train", str(data), "--device", "cpu", "--min-accuracy", "0.8", "--out", str(out)
    )
    assert code == 0
    assert load_study(out).grid == load_study(TINY).grid
    assert "dry run: study 'r', min-accuracy budget 0.8 (accuracy)" in printed
    assert "trials: 1 at a time (CPU trials" in printed
    assert printed.splitlines()[-1] == (
        f"search it: autoprumux search --study {out} --min-accuracy 0.8 --device cpu --gpus 0"
    )
    header = out.read_text().splitlines()
    assert header[header.index("# Search it:") + 1] == (
        f"#   autoprumux search --study {out} --min-accuracy 0.8 --device cpu --gpus 0"
    )


def test_a_gpu_study_starts_from_the_paper_study(tmp_path, capsys, tiny_model):
    """--device cuda on a machine without one: the paper's grid, its epochs as steps for the
    data, its MUX-BERT checkpoints left out for another model; the plan left to the GPU
    machine. 216 training rows fill a batch of N = 5 (32 rows x 5 = 160 examples), not one of
    N = 10 (320): N = 10 is left out of the grid, and said (the plan is not there to refuse
    it)."""
    data = write_reviews(tmp_path / "reviews.csv", rows=240)
    out = tmp_path / "gpu.toml"
    code, printed, _ = init(
        capsys, "--train", str(data), "--model", str(tiny_model), "--device", "cuda",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0
    study, paper = load_study(out), load_study(PAPER)
    assert paper.grid.n == (1, 2, 5, 10) and paper.training.batch_rows == 32
    assert (study.grid.n, study.grid.sparsity) == ((1, 2, 5), paper.grid.sparsity)
    note = (
        "N = 10 left out of the template's grid: the 216 training rows cannot fill one of its "
        "batches (at N = 10: 32 rows x 10 = 320 examples, [training] batch_rows)"
    )
    assert f"note: {note}" in printed.splitlines()
    text = out.read_text()  # the note above the line (too long to stand beside it)
    assert "\n# N = 10 left out of the template's grid: the 216 training rows" in text
    assert "\nn = [1, 2, 5]\n" in text
    assert study.model.multiplexed_name_or_path == ""
    # 40 epochs of 216 rows = 270 steps, under the fewest (300)
    assert study.training.finetune_steps == max(round(40 * 216 / 32), 300) == 300
    assert "no GPU here: run `autoprumux search --dry-run --study" in printed
    assert "dry run:" not in printed


# -- bad input: one line, exit 2, nothing written -------------------------------------------


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        ({}, [], "train.csv: no such file"),
        (
            {"train.csv": "id,text\n" + "".join(f"{i},text {i}\n" for i in range(30))},
            [],
            "no column looks like a label (2 to 50 distinct values, and at least 5 times as many "
            "rows as values); "
            "name it with --label (its columns: id, text)",
        ),
        (
            {"train.csv": None},
            ["--text", "body"],
            "has no column 'body' (--text); its columns: id, review, sentiment",
        ),
        (
            {"train.csv": None},
            ["--label", "grade"],
            "has no column 'grade' (--label); its columns: id, review, sentiment",
        ),
        (
            {"train.csv": "text,label\n" + "".join(f"text {i},a\n" for i in range(20))},
            [],
            "column 'label' holds one distinct label ('a'); a classifier needs at least two",
        ),
        (
            {"train.csv": None, "dev.csv": "id,review,sentiment\n1,so so,meh\n"},
            ["--dev", "dev.csv"],
            "dev.csv: line 2: label 'meh' is not one of the training split's labels: neg, pos",
        ),
        (
            {"train.csv": "id,review,sentiment\n1,good,pos\n2,bad,neg,extra\n"},
            [],
            "(a ragged row: quote fields that hold the separator)",
        ),
        (
            {"train.csv": b"id,review,sentiment\n1,good,pos\n2,caf\xe9,neg\n"},
            [],
            "train.csv: line 3 holds bytes that are not UTF-8; save the file as UTF-8",
        ),
        ({"train.csv": None}, ["--metric", "f1", "--positive-label", "meh"], "'meh' is not one"),
        (  # init's options named, not the study's fields
            {"train.csv": None},
            ["--metric", "f1", "--positive-label", "zzz"],
            "autoprumux: error: --positive-label: 'zzz' is not one of the data's labels: neg, pos",
        ),
        (
            {"train.csv": "review,sentiment\n" + "good,pos\nbad,neg\nso so,meh\n" * 10},
            ["--metric", "f1"],
            "autoprumux: error: --metric: f1 is binary, and the data has 3 labels; name the "
            "positive one with --positive-label, or use --metric macro_f1",
        ),
        (
            {"train.csv": None},
            ["--positive-label", "pos"],
            "autoprumux: error: --positive-label: is only read with --metric f1",
        ),
        (  # the text named as the label: a value a row
            {"train.csv": "review,sentiment\n" + "".join(f"text {i},pos\n" for i in range(60))},
            ["--label", "review"],
            "train.csv: column 'review' holds 60 distinct values in 60 rows: a text or an id, "
            "not a label (a label column holds at most 50 distinct values or at most half as "
            "many as its rows); name the label column ([data] label, init's --label)",
        ),
        (
            {"train.csv": "review;sentiment\ngood;pos\nbad;neg\n"},
            [],
            "train.csv: its header 'review;sentiment' is one column holding ';': the file looks "
            "semicolon-separated, and CSV is comma-separated (save it comma-separated)",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    tmp_path, capsys, monkeypatch, files, args, message
):
    monkeypatch.chdir(tmp_path)
    for name, content in files.items():
        if content is None:
            write_reviews(tmp_path / name)
        else:
            write(tmp_path / name, content)
    before = tree(tmp_path)
    code, printed, err = init(capsys, "--train", "train.csv", *args, "--out", "s/x.toml")
    assert code == 2 and printed == ""
    # datasets' progress bar aside (the loader's: reported to the lead), one line
    lines = [line for line in err.splitlines() if line and "Generating train split" not in line]
    assert len(lines) == 1 and lines[0].startswith("autoprumux: error: ") and message in lines[0]
    assert tree(tmp_path) == before


def test_an_existing_study_is_kept_unless_forced(tmp_path, capsys, committed_table):
    data = write_reviews(tmp_path / "reviews.csv")
    out = write(tmp_path / "reviews.toml", "# mine\n")
    code, printed, err = init(capsys, "--train", str(data), "--out", str(out))
    assert code == 2 and printed == ""
    assert err == f"autoprumux: error: --out: {out} exists; pass --force to overwrite it\n"
    assert out.read_text() == "# mine\n"
    code, _, _ = init(capsys, "--train", str(data), "--out", str(out), "--force")
    assert code == 0 and load_study(out).data.label == "sentiment"


def test_the_command_runs_and_prints_the_plan(tmp_path, tiny_model):
    """A real run, in a process of its own: exit 0, the choices, the plan, the command."""
    data = write_reviews(tmp_path / "reviews.csv", rows=40)
    studies = tmp_path / "studies"
    (studies / "throughput").mkdir(parents=True)  # a table, so the plan times nothing
    table = json.loads(TINY_TABLE.read_text())
    for key in ("model", "num_layers", "seq_len"):  # the tiny study's: the table names none
        del table["fingerprint"][key]
    (studies / "throughput" / "reviews-cpu-float32.json").write_text(json.dumps(table))
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "autoprumux", "init", "--train", str(data), "--model",
         str(tiny_model), "--out", "studies/reviews.toml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "label: 'sentiment' (2 distinct values, named like a label)" in lines
    assert "wrote studies/reviews.toml" in lines
    assert any(line.startswith("dry run: study 'reviews'") for line in lines)
    assert any(line.startswith("expected search: from ") for line in lines)
    assert lines[-1] == "search it: autoprumux search --study studies/reviews.toml --budget 0.03"


@pytest.fixture(scope="module")
def refused_models(tmp_path_factory, tiny_model):
    """Checkpoints with the tiny model's tokenizer that the data refuse: a fine-tuned
    classifier of labels (a, b, c), one whose embedding table is one row short of the
    tokenizer, and one of 6 positions (a study keeps at least 8 tokens a row)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig

    root = tmp_path_factory.mktemp("refused")
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    small = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}
    small.update(intermediate_size=32, max_position_embeddings=64)
    for name, vocab, labels, positions in (
        ("tuned-3", len(tokenizer), ("a", "b", "c"), 64),
        ("small-vocab", len(tokenizer) - 1, ("neg", "pos"), 64),
        ("6-positions", len(tokenizer), ("neg", "pos"), 6),
    ):
        config = BertConfig(
            vocab_size=vocab,
            id2label=dict(enumerate(labels)),
            **(small | {"max_position_embeddings": positions}),
        )
        AutoModelForSequenceClassification.from_config(config).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return root


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("tuned-3", "its classification head has 3 labels (a, b, c), the data 2 (neg, pos)"),
        ("small-vocab", "tokens, but config.json's vocab_size is "),
        ("6-positions", "6-positions holds 6 tokens (its position table), and a study keeps "),
    ],
)
def test_a_model_the_data_refuse_writes_nothing_and_the_rerun_is_not_refused(
    tmp_path, capsys, monkeypatch, committed_table, tiny_model, refused_models, model, message
):
    """The search's model checks refuse before anything is printed or written (no study file,
    no studies/ folder): the corrected rerun with the same --out is not told the file
    exists."""
    monkeypatch.chdir(tmp_path)
    write_reviews(tmp_path / "train.csv")
    write_reviews(tmp_path / "dev.csv", rows=20)
    before = tree(tmp_path)
    args = ("--train", "train.csv", "--dev", "dev.csv", "--out", "studies/x.toml")
    code, printed, err = init(capsys, *args, "--model", str(refused_models / model))
    assert (code, printed) == (2, "")
    lines = [line for line in err.splitlines() if line and "Generating train split" not in line]
    assert len(lines) == 1 and lines[0].startswith("autoprumux: error: ") and message in lines[0]
    assert tree(tmp_path) == before
    code, printed, _ = init(capsys, *args, "--model", str(tiny_model))
    assert code == 0 and "wrote studies/x.toml" in printed.splitlines()
    assert load_study(tmp_path / "studies" / "x.toml").data.dev == "../dev.csv"


def test_new_head_trains_a_fine_tuned_classifier_of_other_labels_anew(
    tmp_path, capsys, monkeypatch, committed_table, refused_models
):
    """A classifier fine-tuned for (a, b, c) on (neg, pos) data: refused with init's own
    advice (it named [model] fine_tuned, a study file init had not written), which works."""
    monkeypatch.chdir(tmp_path)
    write_reviews(tmp_path / "train.csv")
    args = ("--train", "train.csv", "--out", "studies/x.toml", "--model")
    code, _, err = init(capsys, *args, str(refused_models / "tuned-3"))
    assert code == 2 and err.rstrip().endswith("(give --new-head to train a new head)")
    code, printed, _ = init(capsys, *args, str(refused_models / "tuned-3"), "--new-head")
    assert code == 0 and "wrote studies/x.toml" in printed.splitlines()
    study = load_study(tmp_path / "studies" / "x.toml")
    assert study.model.fine_tuned is FineTuned.FALSE
    assert "fine_tuned = false" in (tmp_path / "studies" / "x.toml").read_text()


def test_a_plan_refused_leaves_no_study_and_keeps_the_one_it_would_replace(
    tmp_path, capsys, monkeypatch, committed_table
):
    """A check only the plan makes (the search's report, reports/x.html, cannot be written:
    reports is a file) refuses in one line: the study folder init made is gone again, a study
    --force would replace is kept as it was, and `wrote` is not printed."""
    monkeypatch.chdir(tmp_path)
    write_reviews(tmp_path / "train.csv")
    write(tmp_path / "reports", "a file where the reports folder would be\n")
    before = tree(tmp_path)
    code, printed, err = init(capsys, "--train", "train.csv", "--out", "studies/x.toml")
    report = tmp_path / "reports" / "x.html"
    refusal = (
        f"autoprumux: error: report: {report} cannot be written: {tmp_path / 'reports'} is not "
        "a folder\n"
    )
    assert (code, err) == (2, refusal)
    assert "wrote" not in printed
    assert tree(tmp_path) == before  # no studies/, no staged file
    (tmp_path / "studies").mkdir()
    old = write(tmp_path / "studies" / "x.toml", "# mine\n")
    code, printed, err = init(capsys, "--train", "train.csv", "--out", "studies/x.toml", "--force")
    assert (code, err) == (2, refusal)
    assert "wrote" not in printed
    assert old.read_text() == "# mine\n"
    assert tree(tmp_path) == sorted([*before, "studies", "studies/x.toml"])


def test_the_plan_reads_a_staged_study_and_a_refusal_names_the_out_file(
    tmp_path, capsys, monkeypatch, committed_table
):
    """The plan checks the study staged beside --out under a name of the same stem (the same
    study: its name, folder and relative paths), while --out still holds the old file whole
    (what a kill during the checks leaves); once they pass the staged file is moved into
    place, and a refusal that names the staged file names --out instead."""
    from autoprumux.cli import search_commands
    from autoprumux.core.errors import FieldError

    real = search_commands.run_dry_run_command
    (tmp_path / "studies").mkdir()
    out = write(tmp_path / "studies" / "reviews.toml", "# mine\n")
    staged: list[tuple[str, str]] = []
    refuse = True

    def spy(request, echo):
        path = Path(request.study_path)
        staged.append((path.name, path.read_text()))
        assert out.read_text() == "# mine\n"
        study = load_study(path)
        assert (path.parent, study.name) == (out.parent, "reviews")
        assert study.data.train == "../reviews.csv"
        if refuse:
            raise FieldError("model.num_layers", "refused by the spy", str(path))
        return real(request, echo)

    monkeypatch.setattr(search_commands, "run_dry_run_command", spy)
    data = write_reviews(tmp_path / "reviews.csv")
    args = ("--train", str(data), "--out", str(out), "--force")
    code, printed, err = init(capsys, *args)
    assert (code, err) == (2, f"autoprumux: error: {out}: model.num_layers: refused by the spy\n")
    assert "wrote" not in printed and out.read_text() == "# mine\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["reviews.toml"]
    assert staged[0][0] == f"reviews.init-{os.getpid()}"
    refuse = False
    code, printed, _ = init(capsys, *args)
    assert code == 0
    lines = printed.splitlines()
    assert lines.index(f"wrote {out}") < lines.index(
        "first picks (started before any result decides the next point):"
    )
    assert out.read_text() == staged[1][1] and out.read_text().startswith("# Written by")
    assert sorted(p.name for p in out.parent.iterdir()) == ["reviews.toml"]


def comment_above(text: str, header: str) -> str:
    """The comment lines just above ``header`` in a written study, joined."""
    lines = text.splitlines()
    above = []
    for line in reversed(lines[: lines.index(header)]):
        if not line.startswith("# "):
            break
        above.insert(0, line[2:])
    return " ".join(above)


def test_the_data_comment_says_where_dev_comes_from(tmp_path, capsys, committed_table):
    """With --dev, [data]'s comment says dev is the file given (not carved from train)."""
    data = write_reviews(tmp_path / "reviews.csv")
    dev = write_reviews(tmp_path / "dev.csv", rows=20)
    given = tmp_path / "given.toml"
    code, _, _ = init(capsys, "--train", str(data), "--dev", str(dev), "--out", str(given))
    assert code == 0
    text = given.read_text()
    assert comment_above(text, "[data]") == (
        "Your data: files relative to this file; the text and label columns; dev: the given "
        "file, the split the search chooses on"
    )
    assert "carved" not in text and 'dev = "dev.csv"' in text
    carved = tmp_path / "carved.toml"
    code, _, _ = init(capsys, "--train", str(data), "--out", str(carved))
    assert code == 0
    assert comment_above(carved.read_text(), "[data]") == (
        "Your data: files relative to this file; the text and label columns; no dev file: dev "
        "is carved from train (10%, at most 5,000 rows, stratified, with [study] seed)"
    )


# -- the recipe and the TOML writer -----------------------------------------------------------


def test_the_cpu_recipe_is_three_epochs_between_300_steps_and_the_templates():
    """The tiny study's steps (1,200 fine-tuning steps: 0.57 epochs of SST-2's 67,349 rows)."""
    template = TrainingSection(
        finetune_steps=1200, pruning_steps=300, lagrangian_warmup_steps=150, post_pruning_steps=100
    )
    # 12,000 rows: 3 epochs = 1,125 steps; the others x 1125/1200
    recipe = scale_recipe(template, 12_000, 67_349)
    assert recipe.steps == {
        "finetune": 1125,
        "pruning": 281,
        "lagrangian_warmup": 141,
        "post_pruning": 94,
    }
    assert recipe.rule.startswith(
        "about 3 epochs of 12,000 rows at 32 rows a batch: 1,125 fine-tuning steps"
    )
    big = scale_recipe(template, 1_000_000, 67_349)  # capped at the template's
    assert big.steps == {
        "finetune": 1200,
        "pruning": 300,
        "lagrangian_warmup": 150,
        "post_pruning": 100,
    }
    assert "capped at the template's 1,200" in big.rule
    small = scale_recipe(template, 500, 67_349)  # 47 steps raised to 300, the rest x 0.25
    assert small.steps == {
        "finetune": 300,
        "pruning": 75,
        "lagrangian_warmup": 38,
        "post_pruning": 25,
    }


def test_the_gpu_recipe_keeps_the_papers_epochs_up_to_its_steps_on_sst2():
    """The paper's 40/40/2/20 epochs: on SST-2's 67,349 rows, 84,186 fine-tuning steps."""
    template = TrainingSection()  # the defaults are the paper's
    assert (template.finetune_epochs, template.lagrangian_warmup_epochs) == (40.0, 2.0)
    small = scale_recipe(template, 1_000, 67_349)  # 40 epochs of 1,000 rows
    assert small.steps["finetune"] == 1250 == round(40 * 1000 / 32)
    most = round(40 * 67_349 / 32)
    assert most == 84_186
    assert small.steps["post_pruning"] == round(round(20 * 67_349 / 32) * 1250 / most) == 625
    big = scale_recipe(template, 1_000_000, 67_349)
    assert big.steps == {
        "finetune": most,
        "pruning": most,
        "lagrangian_warmup": round(2 * 67_349 / 32),
        "post_pruning": round(20 * 67_349 / 32),
    }
    assert math.isclose(big.epochs, most * 32 / 1_000_000)


def test_the_toml_writer_round_trips_a_study_document():
    document = {
        "schema": 1,
        "study": {"seed": -3, "description": 'a "quoted" \\ back\nslash\t\x01 é ✓'},
        "grid": {"n": [1, 2, 4], "sparsity": [0.0, 0.5, 1e-05]},
        "training": {"dropout": 0.0, "group_by_length": True, "compile": False},
        "data": {"labels": ["neg", "pos"], "weird key": "x", "nested": {"deep": 2.5}},
    }
    text = toml_text(
        document,
        header=["Written by a test."],
        comments={
            ("grid",): "the points",
            ("grid", "n"): "short",
            ("study", "seed"): "a comment far too long to stay on the line of its key " * 2,
        },
    )
    assert tomllib.loads(text) == document
    lines = text.splitlines()
    assert lines[0] == "# Written by a test."
    assert lines[lines.index("[grid]") - 1] == "# the points"
    assert "n = [1, 2, 4]  # short" in lines
    seed = lines.index("seed = -3")  # its comment above it, wrapped on two lines
    assert lines[seed - 2].startswith("# a comment far too long") and lines[seed - 1][0] == "#"
    assert all(len(line) <= 100 for line in lines)
    assert '"weird key" = "x"' in lines and "[data.nested]" in lines
    with pytest.raises(TypeError, match="no NoneType value"):
        toml_text({"a": None})


# -- data as people write it -----------------------------------------------------------------


def test_a_json_lines_file_of_mixed_values_is_read_as_text(tmp_path, capsys, committed_table):
    """0/1 labels with one "1" on line 4, a review that is a bare number on line 5: the labels
    0 and 1, the number a text."""
    records: list[dict[str, object]] = [
        {
            "review": f"the film {i} was very {WORDS['pos' if i % 2 else 'neg'][i % 3]}",
            "label": i % 2,
        }
        for i in range(60)
    ]
    records[3]["label"] = "1"
    records[4]["review"] = 12345
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "mixed.toml"
    code, printed, _ = init(capsys, "--train", str(data), "--out", str(out))
    assert code == 0
    assert "label: 'label' (2 distinct values, named like a label)" in printed.splitlines()
    tables = load_tables(data_spec(load_study(out)))
    assert tables.label_names == ("0", "1")
    assert tables.train.num_rows + tables.dev.num_rows == 60
    assert "12345" in tables.train["text"].to_pylist() + tables.dev["text"].to_pylist()


def test_labels_spelled_two_ways_are_shown_and_warned(tmp_path, capsys, committed_table):
    """'Neg ' beside neg: two classes, as the file says, the spaces shown and a note; a dev
    file that is the training file: a note too."""
    rows = [f"the film {i} was fine,{['neg', 'Neg ', 'pos', 'pos'][i % 4]}" for i in range(60)]
    data = tmp_path / "case.csv"
    data.write_text("review,sentiment\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "case.toml"
    code, printed, _ = init(capsys, "--train", str(data), "--dev", str(data), "--out", str(out))
    assert code == 0
    lines = printed.splitlines()
    assert lines[lines.index("labels: 3, in the training split:") + 1 :][:3] == [
        "  'Neg '         15  25.0%",
        "  neg            15  25.0%",
        "  pos            30  50.0%",
    ]
    assert (
        "note: labels 'Neg ' and 'neg' differ only in case or spaces: they are 2 separate "
        "classes; write them alike in the file if they are one" in lines
    )
    assert (
        "note: 60 of the dev split's 60 rows also appear in train: every dev figure the search "
        "chooses on is optimistic" in lines
    )


# -- what the sweep of init on users' files found ----------------------------------------------


def test_a_test_file_changes_nothing_the_search_decides(tmp_path, capsys, committed_table):
    """The recipe is a decision, and no decision reads a test value: a test file of long rows
    leaves max_seq_length and the token counts as they are without it."""
    data = write_reviews(tmp_path / "reviews.csv", rows=160)
    long = tmp_path / "test.csv"
    long.write_text(
        "id,review,sentiment\n"
        + "".join(f"{i},{' '.join(['a good film'] * 100)},pos\n" for i in range(40)),
        encoding="utf-8",
    )
    outs = []
    for name, more in (("plain", ()), ("tested", ("--test", str(long)))):
        out = tmp_path / f"{name}.toml"
        code, printed, _ = init(capsys, "--train", str(data), *more, "--out", str(out))
        assert code == 0
        outs.append((load_study(out).model.max_seq_length, printed))
    (plain, plain_out), (tested, tested_out) = outs
    assert plain == tested == 32
    assert "test 40 (its file)" in tested_out
    line = next(x for x in plain_out.splitlines() if x.startswith("tokens ("))
    assert "all 160 train and dev rows" in line and line in tested_out.splitlines()


def test_training_data_smaller_than_a_batch_is_refused_and_a_larger_n_left_out(
    tmp_path, capsys, monkeypatch, committed_table
):
    """10 rows (9 to train on) cannot fill one batch of 32 rows: refused in one line naming
    --train, nothing written. 100 rows (90) fill N = 1's and N = 2's batches (32, 64
    examples), not N = 4's (128): N = 4 is left out of the written grid, said in a note and in
    the file, and the plan prices the 12 points left."""
    monkeypatch.chdir(tmp_path)
    write_reviews(tmp_path / "few.csv", rows=10)
    code, printed, err = init(capsys, "--train", "few.csv", "--out", "few.toml")
    assert (code, printed) == (2, "")
    assert err == (
        "autoprumux: error: --train: its training split holds 9 rows, fewer than one batch of "
        "the template's recipe (32 rows, [training] batch_rows); give at least 32 training "
        "rows\n"
    )
    assert not (tmp_path / "few.toml").exists()
    write_reviews(tmp_path / "some.csv", rows=100)
    code, printed, _ = init(capsys, "--train", "some.csv", "--out", "some.toml")
    assert code == 0
    study = load_study(tmp_path / "some.toml")
    assert study.grid.n == (1, 2) and study.grid.sparsity == load_study(TINY).grid.sparsity
    note = (
        "N = 4 left out of the template's grid: the 90 training rows cannot fill one of its "
        "batches (at N = 4: 32 rows x 4 = 128 examples, [training] batch_rows)"
    )
    assert f"note: {note}" in printed.splitlines()
    assert comment_above((tmp_path / "some.toml").read_text(), "n = [1, 2]") == note
    assert "dry run: study 'some', absolute budget 0.03 (accuracy), 12 grid points" in printed


def test_the_length_chosen_as_the_longest_the_model_takes_says_so(
    tmp_path, capsys, monkeypatch, committed_table, tiny_model
):
    """95 short rows and 5 of 300 tokens on a model of 64 positions: neither 32 nor 64 holds
    99% of them, 64 is chosen as the longest the model takes, and the 5% it cuts is a note.
    Lengths measured on a sample say so."""
    from trainers.data import inspect

    monkeypatch.chdir(tmp_path)
    rows = [f"{i},the film was very good,{'pos' if i % 2 else 'neg'}" for i in range(95)]
    rows += [
        f"{i}," + " ".join(["bad"] * 300) + f",{'pos' if i % 2 else 'neg'}" for i in range(95, 100)
    ]
    (tmp_path / "r.csv").write_text("id,review,sentiment\n" + "\n".join(rows) + "\n")
    code, printed, _ = init(
        capsys, "--train", "r.csv", "--model", str(tiny_model), "--out", "r.toml"
    )
    assert code == 0
    lines = printed.splitlines()
    assert (
        "max_seq_length: 64 (none of 32, 64 holds 99% of the rows whole: the longest the model "
        "takes, which holds 95.0%; 5.0% would be truncated)"
    ) in lines
    assert (
        "note: 5.0% of the rows are longer than 64 tokens (the longest the model takes): each "
        "is cut to its first 64 tokens, and what its end says is lost to the model"
    ) in lines
    text = (tmp_path / "r.toml").read_text()
    assert (
        "max_seq_length = 64  # the longest the model takes; holds 95.0% of the rows whole "
        "(5.0% truncated)"
    ) in text
    real = inspect.token_lengths
    monkeypatch.setattr(
        inspect, "token_lengths", lambda table, tokenizer, seed: real(table, tokenizer, 40, seed)
    )
    code, printed, _ = init(
        capsys, "--train", "r.csv", "--model", str(tiny_model), "--out", "r2.toml"
    )
    assert code == 0
    assert "40 of 100 train and dev rows sampled with seed 0" in printed
    line = next(x for x in printed.splitlines() if x.startswith("max_seq_length: "))
    assert "of the rows in a sample of 40 whole" in line


def test_text_the_models_vocabulary_lacks_is_a_note_naming_model(tmp_path, capsys, committed_table):
    """Chinese reviews and the English uncased vocabulary of the default model: most of their
    tokens are [UNK] (over 10%), said with the option that changes the model."""
    from trainers.model.checkpoints import load_tokenizer

    phrases = ["这部电影非常好看", "剧情感人推荐观看", "太无聊了浪费时间", "演员表演很差劲"]
    rows = [f"{phrases[i % 4]}{i},{i % 2}" for i in range(60)]
    data = write(tmp_path / "zh.csv", "text,label\n" + "\n".join(rows) + "\n")
    code, printed, _ = init(capsys, "--train", str(data), "--out", str(tmp_path / "zh.toml"))
    assert code == 0
    tokenizer = load_tokenizer(load_study(TINY).model.name_or_path)
    ids = [tokenizer(r.split(",")[0], add_special_tokens=False)["input_ids"] for r in rows]
    share = sum(i.count(tokenizer.unk_token_id) for i in ids) / sum(len(i) for i in ids)
    assert share > 0.1
    note = next(x for x in printed.splitlines() if "unknown token" in x)
    assert note == (
        f"note: {100 * share:.1f}% of the texts' tokens are the tokenizer's unknown token: "
        f"{load_study(TINY).model.name_or_path}'s vocabulary does not cover this text (a "
        "language or script it was not trained on); choose a model that does with --model"
    )
    code, printed, _ = init(capsys, "--train", str(write_reviews(tmp_path / "en.csv", rows=60)),
                            "--out", str(tmp_path / "en.toml"))  # fmt: skip
    assert code == 0 and "unknown token" not in printed


def test_the_comment_beside_a_column_is_its_reason_whatever_its_name_holds(
    tmp_path, capsys, committed_table
):
    rows = [f"the film {i} was very {WORDS['pos'][i % 3]},{i % 2}" for i in range(60)]
    data = write(tmp_path / "odd.csv", "text,Sentiment (0/1)\n" + "\n".join(rows) + "\n")
    code, _, _ = init(capsys, "--train", str(data), "--out", str(tmp_path / "odd.toml"))
    assert code == 0
    assert (
        'label = "Sentiment (0/1)"  # 2 distinct values, the fewest values of the columns that '
        "could be\n"
    ) in (tmp_path / "odd.toml").read_text()


def test_a_storage_holding_another_study_of_the_name_is_refused_naming_name(
    tmp_path, capsys, monkeypatch, committed_table
):
    """The plan's storage check, in init's words: its study is named by --name (init has no
    --storage: the database is <name>.db beside the study)."""
    import optuna

    monkeypatch.chdir(tmp_path)
    write_reviews(tmp_path / "train.csv", rows=60)
    (tmp_path / "studies").mkdir()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    stored = optuna.create_study(
        study_name="x", storage=f"sqlite:///{tmp_path}/studies/x.db", directions=["maximize"] * 2
    )
    stored.set_user_attr("grid", "other")
    stored.set_user_attr("task", "x")
    code, printed, err = init(capsys, "--train", "train.csv", "--out", "studies/x.toml")
    assert code == 2 and "wrote" not in printed
    assert err.rstrip().endswith("use another study name (--name)"), err
    assert "[study] name" not in err and "--storage" not in err
    assert not (tmp_path / "studies" / "x.toml").exists()
