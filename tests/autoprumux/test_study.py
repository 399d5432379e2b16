import dataclasses
import logging
from pathlib import Path

import pytest

from autoprumux.core.errors import FieldError
from autoprumux.core.grid import PAPER_GRID
from autoprumux.core.study import STUDY_FIELDS, DataSource, TrainingSection, load_study
from autoprumux.core.study_fields import Effect, Stage, field_info

STUDIES = sorted(Path(__file__).resolve().parents[2].joinpath("studies").glob("*.toml"))


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_committed_studies_load(path):
    study = load_study(path)
    assert study.name == path.stem and study.task in path.stem
    assert study.grid.grid.has_baseline


def test_paper_study_holds_the_paper_grid_and_table_5():
    study = load_study(STUDIES[0].parent / "sst2.toml")
    assert study.grid.grid == PAPER_GRID
    assert study.training.pruning_learning_rate == 5e-5 and study.training.batch_rows == 32
    assert study.storage_url == f"sqlite:///{STUDIES[0].parent / 'sst2.db'}"


def test_minimal_study_takes_every_default(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[study]\ntask = "qnli"\n')
    study = load_study(path)
    assert study.name == "mine" and study.grid.grid == PAPER_GRID
    assert study.data.source is DataSource.HUB
    assert study.storage_url == f"sqlite:///{tmp_path / 'mine.db'}"


def test_relative_paths_are_relative_to_the_study_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "s.toml"
    path.write_text('[study]\ntask = "sst2"\n[data]\nsource = "glue_dir"\nglue_dir = "../glue"\n')
    study = load_study(path)
    assert study.resolve(study.data.glue_dir) == tmp_path / "glue"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[study]\ntask = "cola"', "study.task: 'cola' is not one of: sst2, mnli, qnli, qqp"),
        (
            "[grid]\nn = [1]",
            "study.task: is missing; name a GLUE preset (sst2, mnli, qnli, qqp) or the study's "
            "own data in [data] (train = FILE, or dataset = HUB_ID)",
        ),
        (
            '[study]\ntask = "sst2"\n[data]\ntrain = "r.csv"',
            "study.task: 'sst2' names a GLUE preset, but [data] names the study's own data; "
            "leave task out (the task is named after the study)",
        ),
        ('[data]\ntrain = "r.csv"\ndataset = "x/y"', "data.dataset: and train are both set"),
        ('[data]\ndev = "d.csv"', "data.dev: needs the study's own data: set train (or dataset)"),
        ('[data]\ntrain = "r.csv"\nformat = "xml"', "data.format: 'xml' is not one of"),
        ('[data]\ntrain = "r.csv"\nlabels = ["a"]', "data.labels: names one label"),
        (
            '[data]\ntrain = "r.csv"\ndev_fraction = 0.6',
            "data.dev_fraction: 0.6 is not in [0, 0.5)",
        ),
        ('[study]\nmetric = "auc"\n[data]\ntrain = "r.csv"', "study.metric: 'auc' is not one of"),
        (
            '[study]\ntask = "sst2"\n[grids]\nn = [1]',
            "grids: is not a field of the study file; did you mean grid? allowed: study, grid, "
            "model, data, training, multiplexing, warmup, throughput, deploy, storage, schema",
        ),
        (
            '[study]\ntask = "sst2"\n[grid]\nN = [1]',
            "grid.N: is not a field of [grid]; did you mean n? allowed: n, sparsity",
        ),
        (
            '[study]\ntask = "sst2"\n[training]\nbatch_row = 8',
            "training.batch_row: is not a field of [training]; did you mean batch_rows? allowed:",
        ),
        (
            '[study]\ntask = "sst2"\n[grid]\nn = [2, 5]',
            "grid.n: the grid must hold N = 1 and s = 0",
        ),
        (
            '[study]\ntask = "sst2"\n[grid]\nsparsity = [0, 1.2]',
            "grid.sparsity: 1.2 is outside [0, 1)",
        ),
        ('[study]\ntask = "sst2"\n[grid]\nn = [1, 1]', "grid.n: [1, 1] repeats a value"),
        ('[study]\ntask = "sst2"\n[grid]\nn = "1,2"', "grid.n: '1,2' is not a list"),
        ('[study]\ntask = "sst2"\n[grid]\nn = [1, 2.5]', "grid.n[1]: 2.5 is not an integer"),
        (
            '[study]\ntask = "sst2"\n[training]\nbatch_rows = 0',
            "training.batch_rows: 0 is not >= 1",
        ),
        (
            '[study]\ntask = "sst2"\n[training]\ndropout = 1.0',
            "training.dropout: 1.0 is not below 1",
        ),
        (
            '[study]\ntask = "sst2"\n[training]\nprecision = "fp8"',
            "training.precision: 'fp8' is not one of: 'auto', 'fp32', 'bf16', 'fp16'",
        ),
        (
            '[study]\ntask = "sst2"\n[training]\ncompile = "yes"',
            "training.compile: 'yes' is not",
        ),
        (
            '[study]\ntask = "sst2"\n[throughput]\ndevice = "gpu"',
            "throughput.device: 'gpu' is not one of: auto, cpu, cuda, cuda:INDEX",
        ),
        (
            '[study]\ntask = "sst2"\n[throughput]\ndtype = "bfloat16"',
            "throughput.dtype: 'bfloat16' is not float32: the fp32 rows are timed in float32",
        ),
        (
            '[study]\ntask = "sst2"\n[training]\npruning_learning_rate = "fast"',
            "training.pruning_learning_rate: 'fast' is not a number",
        ),
        (
            '[study]\ntask = "sst2"\n[data]\nsource = "s3"',
            "data.source: 's3' is not one of: 'hub', 'glue_dir'",
        ),
        ('[study]\ntask = "sst2"\n[data]\nsource = "glue_dir"', "data.glue_dir: is empty"),
        ('[study]\ntask = "sst2"\n[data]\nsubset = "last"', "data.subset: 'last' is not one of"),
        (
            '[study]\ntask = "sst2"\n[multiplexing]\ndemux = "attention"',
            "multiplexing.demux: 'attention' is not one of: 'index_pos', 'mlp'",
        ),
        ('[study]\ntask = "sst2"\n[warmup]\npositions = 0', "warmup.positions: 0 is not >= 1"),
        ('schema = 2\n[study]\ntask = "sst2"', "schema: 2 is not supported; this release reads 1"),
        ("[study\n", "study: is not valid TOML"),
        ("study = 3", "study: must be a table ([section])"),
    ],
)
def test_invalid_studies_name_the_file_and_field(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(FieldError) as err:
        load_study(path)
    assert str(err.value).startswith(f"{path}: {message}")


def test_the_recipe_covers_what_decides_a_trials_result(tmp_path):
    path = tmp_path / "s.toml"

    def recipe(extra, study='[study]\ntask = "sst2"\n'):
        path.write_text(study + extra)
        return load_study(path).recipe

    plain = recipe("")
    assert plain == recipe("") and len(plain) == 12
    for changed in (
        "[training]\nfinetune_learning_rate = 3e-5",
        "[training]\ndropout = 0.0",
        "[training]\nprecision = 'fp32'",  # bf16 on a GPU under auto: another model
        '[warmup]\ntext = "corpus.txt"',
        "[multiplexing]\npooling = 'mean'",
        "[model]\nnum_layers = 2",
        "[data]\nmax_train_examples = 100",
        "[training]\ngroup_by_length = true",
        "[warmup]\ngroup_by_length = true",
    ):
        assert recipe(changed) != plain, changed
    assert recipe("", study='[study]\ntask = "sst2"\nseed = 1\n') != plain
    assert recipe("", study='[study]\ntask = "qnli"\n') != plain
    for unchanged in (
        "[training]\ncompile = true",  # speed: the same model, its float sums in another order
        "[training]\ncheckpoint_every = 7",  # a resumed phase is the same phase
        "[grid]\nn = [1, 2]",
        "[throughput]\npasses = 3",
        "[storage]\nurl = 'x'",
    ):
        assert recipe(unchanged) == plain, unchanged
    assert recipe("", study='[study]\ntask = "sst2"\nname = "x"\ndescription = "y"\n') == plain
    # a setting added later, at its default: the recipe of studies stored before it existed;
    # the hash of every result-deciding field of the default sst2 study (the task's included)
    assert recipe("[training]\ngroup_by_length = false") == plain == "d96434275a0f"


def test_every_study_field_declares_its_help_and_effect():
    for name, item in STUDY_FIELDS.items():
        info = field_info(item)  # raises without about(...)
        assert len(info.help) > 10, name
        assert bool(info.stages) == info.decides_results, name
    assert field_info(STUDY_FIELDS["training.compile"]).effect is Effect.SPEED
    assert field_info(STUDY_FIELDS["multiplexing.pooling"]).stages == {Stage.TEACHER}


def test_a_removed_field_is_ignored_with_a_warning_naming_it(tmp_path, caplog):
    path = tmp_path / "old.toml"
    path.write_text('[study]\ntask = "sst2"\n[training]\nsparsity_epsilon = 0.05\n')
    with caplog.at_level(logging.WARNING, logger="autoprumux.core.study"):
        study = load_study(path)
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: training.sparsity_epsilon is ignored (it was read by nothing); delete it from "
        "the study file"
    ]
    path.write_text('[study]\ntask = "sst2"\n')
    assert study == load_study(path) and study.recipe == load_study(path).recipe
    assert not hasattr(study.training, "sparsity_epsilon")


def test_an_unknown_training_field_names_the_allowed_ones_in_one_line(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('[study]\ntask = "sst2"\n[training]\nfinetune_lr = 1e-4\n')
    with pytest.raises(FieldError) as err:
        load_study(path)
    message = str(err.value)
    assert "\n" not in message
    # no guess: finetune_lr shares more with finetune_steps than with finetune_learning_rate
    assert message.startswith(f"{path}: training.finetune_lr: is not a field of [training]; al")
    allowed = message.partition("allowed: ")[2].split(", ")
    assert allowed == [f.name for f in dataclasses.fields(TrainingSection)]
    assert "sparsity_epsilon" not in allowed


def test_no_shipped_study_sets_a_removed_field(caplog):
    with caplog.at_level(logging.WARNING, logger="autoprumux.core.study"):
        for path in STUDIES:
            load_study(path)
    assert caplog.records == []


def test_missing_study_file(tmp_path):
    with pytest.raises(FieldError, match="cannot be read: no such file"):
        load_study(tmp_path / "nope.toml")
