from pathlib import Path

import pytest

from autoprumux.core.errors import FieldError
from autoprumux.core.grid import PAPER_GRID
from autoprumux.core.study import DataSource, load_study

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
        ("[grid]\nn = [1]", 'study: section is missing; it needs at least: task = "sst2"'),
        (
            '[study]\ntask = "sst2"\n[grids]\nn = [1]',
            "grids: is not a field of the study file; allowed: study, grid, model, data, training, "
            "multiplexing, warmup, throughput, storage, schema",
        ),
        (
            '[study]\ntask = "sst2"\n[grid]\nN = [1]',
            "grid.N: is not a field of [grid]; allowed: n, sparsity",
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
        "[training]\ndropout = 0.0",  # not in the repr, still in the recipe
        '[warmup]\ntext = "corpus.txt"',
        "[multiplexing]\npooling = 'mean'",
        "[model]\nnum_layers = 2",
        "[training]\ngroup_by_length = true",
        "[warmup]\ngroup_by_length = true",
    ):
        assert recipe(changed) != plain, changed
    assert recipe("", study='[study]\ntask = "sst2"\nseed = 1\n') != plain
    for unchanged in ("[grid]\nn = [1, 2]", "[throughput]\npasses = 3", "[storage]\nurl = 'x'"):
        assert recipe(unchanged) == plain, unchanged
    # a setting added later, at its default: the recipe of studies stored before it existed
    assert recipe("[training]\ngroup_by_length = false") == plain == "1a31bf540147"


def test_missing_study_file(tmp_path):
    with pytest.raises(FieldError, match="cannot be read: no such file"):
        load_study(tmp_path / "nope.toml")
