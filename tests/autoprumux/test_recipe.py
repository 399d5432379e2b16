"""A study's recipe (autoprumux.core.recipe): exactly the fields that decide results, and the
comparison of a stored recipe, a settings dict or an older release's hash, with a study file's."""

import dataclasses
import json
from pathlib import Path

import pytest

from autoprumux.core.recipe import recipe_conflicts, recipe_record, recipe_settings
from autoprumux.core.study import STUDY_FIELDS, Compile, load_study
from autoprumux.core.study_fields import field_info

STUDIES = Path(__file__).resolve().parents[2] / "studies"


def test_the_recipe_settings_are_exactly_the_fields_that_decide_results():
    study = load_study(STUDIES / "sst2-tiny.toml")
    settings = recipe_settings(study)
    deciding = {name for name, item in STUDY_FIELDS.items() if field_info(item).decides_results}
    assert set(settings) == deciding
    not_deciding = set(STUDY_FIELDS) - deciding
    assert not_deciding == {
        "study.name",
        "study.description",
        "grid.n",
        "grid.sparsity",
        "training.checkpoint_every",
        "training.checkpoint_minutes",
        "training.length_buckets",
        "training.compile",
        "training.deterministic",
        *(f"throughput.{name}" for name in ("device", "dtype", "batch_rows", "passes")),
        *(f"throughput.{name}" for name in ("examples_per_pass", "warmup_passes", "threads")),
        "throughput.trial_examples_per_pass",
        "deploy.precisions",  # what a trained model is evaluated in after its training
        "storage.url",
        "data.test",  # read after the search has answered: by no training
        "data.test_split",
    }
    # JSON values, as a storage gives them back
    assert settings["data.source"] == "glue_dir" and settings["training.finetune_steps"] == 1200
    assert settings["study.task"] == "sst2" and settings["study.seed"] == 0
    assert json.loads(json.dumps(settings)) == settings


# The recipe hashes the release before the recorded settings stored: its formula hashed the seed
# and every field of [model], [data], [training], [multiplexing] and [warmup], compile,
# checkpoint_every and sparsity_epsilon included (the paper studies shared one: no task in it).
OLD_RECIPES = {"sst2.toml": "462e8a9d8d2c", "sst2-tiny.toml": "16e3ab561038"}


def with_training(study, **settings):
    return dataclasses.replace(study, training=dataclasses.replace(study.training, **settings))


@pytest.mark.parametrize("name", OLD_RECIPES)
def test_a_study_stored_under_the_old_recipe_hash_is_still_accepted(name):
    study = load_study(STUDIES / name)
    old = OLD_RECIPES[name]
    assert recipe_conflicts(old, recipe_record(study)) == []
    # speed settings flipped since: the same results, still accepted
    assert recipe_conflicts(old, recipe_record(with_training(study, compile=Compile.TRUE))) == []
    assert recipe_conflicts(old, recipe_record(with_training(study, checkpoint_every=100))) == []
    # a learning rate changed since: refused
    faster = with_training(study, finetune_learning_rate=1e-3)
    assert recipe_conflicts(old, recipe_record(faster)) == [
        f"the recipe hash {old!r} recorded by an older autoprumux is not this study file's: a "
        "field that decides results changed since"
    ]


def test_the_new_recipe_hash_is_accepted_too():
    study = load_study(STUDIES / "sst2.toml")
    assert recipe_conflicts(study.recipe, recipe_record(study)) == []


def test_stored_recipe_settings_are_compared_field_by_field():
    study = load_study(STUDIES / "sst2-tiny.toml")
    stored = json.loads(json.dumps(recipe_settings(study)))  # as a JSON storage gives it back
    record = recipe_record(with_training(study, compile=Compile.TRUE, checkpoint_every=7))
    assert recipe_conflicts(stored, record) == []
    # settings recorded as deciding that decide nothing now, or removed: ignored
    older = {**stored, "training.compile": False, "training.sparsity_epsilon": 0.01}
    assert recipe_conflicts(older, record) == []
    # a field added since (here: absent from the record) counts at its default
    without = {k: v for k, v in stored.items() if k != "training.group_by_length"}
    assert (
        recipe_conflicts(without, recipe_record(with_training(study, group_by_length=False))) == []
    )
    assert recipe_conflicts(without, recipe_record(study)) == [
        "training.group_by_length: False recorded, True now"
    ]
    changed = recipe_record(with_training(study, finetune_learning_rate=1e-3, dropout=0.1))
    assert recipe_conflicts(stored, changed) == [
        "training.finetune_learning_rate: 0.0003 recorded, 0.001 now",
        "training.dropout: 0.0 recorded, 0.1 now",
    ]
    # a field this release does not know: recorded by a newer one, whose results may differ
    assert recipe_conflicts({**stored, "training.new_thing": 1}, recipe_record(study)) == [
        "training.new_thing: recorded by a newer autoprumux, unknown here"
    ]
    without_task = {k: v for k, v in stored.items() if k != "study.task"}
    assert recipe_conflicts(without_task, recipe_record(study)) == [
        # a field it lacks counts at its default: no preset (a study of its own data names none)
        "study.task: '' recorded, 'sst2' now"
    ]
    assert recipe_conflicts(3, recipe_record(study)) == [
        "the recorded recipe 3 is neither settings nor a hash"
    ]
