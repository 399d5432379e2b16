"""A checkpoint folder that cannot be a model is refused in one line naming what is wrong, before
any training: no tokenizer files (transformers 5 would build a tokenizer of its special tokens
alone), a config.json that is not JSON, a config field of the wrong type or range. Through the
CLI: exit code 2, one line, no traceback, nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from family_models import CASES, bert_fields, distilbert_config, roberta_fields, save_random
from fixtures import VOCAB, make_tiny_model
from transformers import BertConfig, ElectraConfig, PretrainedConfig, RobertaConfig

from autoprumux.cli.main import main
from trainers.model.checkpoints import (
    CheckpointError,
    check_model,
    load_pretrained,
    load_tokenizer,
)

BERT = CASES[0]  # bert/h32: 2 layers, 4 heads, a vocabulary of 120
NO_TOKENIZER = (
    "has no tokenizer files (a tokenizer needs tokenizer.json, or vocab.txt (BERT, ELECTRA, "
    "DistilBERT), vocab.json and merges.txt (RoBERTa) or sentencepiece.bpe.model (XLM-R)); "
    "save the tokenizer the model was trained with into it (tokenizer.save_pretrained(folder))"
)
NOT_JSON = '{"model_type": "bert", "hidden_size": 64,\n'  # cut short after a comma


def edit_config(folder: Path, **fields: Any) -> Path:
    """Set (or, with ``...``, remove) fields of the folder's config.json."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(fields)
    path.write_text(json.dumps({k: v for k, v in config.items() if v is not ...}))
    return folder


# --- no tokenizer ---------------------------------------------------------------------------


def test_a_model_folder_without_tokenizer_files_is_refused_naming_the_files(tmp_path):
    folder = save_random(BERT, tmp_path / "m_notok")  # config.json and model.safetensors
    with pytest.raises(CheckpointError) as err:
        load_tokenizer(str(folder))
    assert str(err.value) == f"model {str(folder)!r}: its folder {NO_TOKENIZER}"


def test_settings_without_a_vocabulary_are_no_tokenizer(tmp_path):
    """tokenizer_config.json and special_tokens_map.json alone: transformers would load them as
    an empty tokenizer."""
    folder = save_random(BERT, tmp_path / "settings_only")
    (folder / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer"}')
    (folder / "special_tokens_map.json").write_text('{"pad_token": "[PAD]"}')
    with pytest.raises(CheckpointError, match="its folder has no tokenizer files"):
        load_tokenizer(str(folder))


def test_a_vocabulary_of_special_tokens_alone_is_refused(tmp_path):
    folder = save_random(BERT, tmp_path / "specials")
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n")
    with pytest.raises(CheckpointError) as err:
        load_tokenizer(str(folder))
    assert str(err.value) == (
        f"model {str(folder)!r}: the tokenizer in its folder holds only its 5 special tokens "
        "([UNK], [SEP], [PAD], [CLS], [MASK]), no vocabulary: every word would read as "
        "unknown; its vocabulary file is empty or not one its tokenizer class reads"
    )


def test_a_model_with_its_tokenizer_still_loads_it(tmp_path):
    folder = make_tiny_model(tmp_path / "tiny")
    assert len(load_tokenizer(str(folder))) == len(VOCAB)


# --- config.json that is not JSON -----------------------------------------------------------


def test_a_config_that_is_not_json_is_one_line_with_its_position(tmp_path):
    folder = save_random(BERT, tmp_path / "m_badjson")
    (folder / "config.json").write_text(NOT_JSON)
    for refuse in (check_model, load_pretrained, load_tokenizer):
        with pytest.raises(CheckpointError) as err:
            refuse(str(folder))
        assert str(err.value) == (
            f"model {str(folder)!r}: config.json is not valid JSON (line 2, column 1: "
            "Expecting property name enclosed in double quotes)"
        )


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"[1, 2]", "is not a JSON object ({...} of the model's settings)"),
        (b'{"model_type": "b\xe9rt"}', "is not valid JSON (it is not UTF-8 text)"),
        (b"", "is not valid JSON (line 1, column 1: Expecting value)"),
    ],
    ids=["a-list", "latin-1", "empty"],
)
def test_a_config_that_is_not_a_json_object_is_one_line(content, reason, tmp_path):
    (tmp_path / "config.json").write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        check_model(str(tmp_path))
    assert str(err.value) == f"model {str(tmp_path)!r}: config.json {reason}"


# --- config fields of the wrong type or range -----------------------------------------------

WHOLE = "a positive whole number"
# not a whole number: a string, JSON's float, boolean and null; out of range: 0 and -1
NOT_WHOLE = ["two", 2.0, True, None, 0, -1]


def bert() -> PretrainedConfig:
    return BertConfig(**bert_fields(32, 4))


def mux_bert() -> PretrainedConfig:
    """A MUX-BERT config of N = 2 (the fields princeton-nlp's checkpoints add)."""
    return BertConfig(**bert_fields(32, 4), num_instances=2, demuxing_variant="index_pos")


CONFIGS = {
    "bert": bert,
    "mux-bert": mux_bert,
    "electra": lambda: ElectraConfig(**bert_fields(32, 4), embedding_size=16),
    "roberta": lambda: RobertaConfig(**roberta_fields(32, 4)),
    "distilbert": lambda: distilbert_config(32, 4),
}
# (config, field, what it allows, values refused): every field Architecture.from_hf_config reads
FIELDS = [
    *[
        ("bert", name, WHOLE, NOT_WHOLE)
        for name in (
            "num_hidden_layers",
            "hidden_size",
            "num_attention_heads",
            "intermediate_size",
            "vocab_size",
            "max_position_embeddings",
            "num_labels",
        )
    ],
    ("bert", "type_vocab_size", "a whole number >= 0", ["two", 2.0, False, None, -1]),
    ("bert", "layer_norm_eps", "a number >= 0", ["1e-12", True, None, -1e-12]),
    ("bert", "hidden_dropout_prob", "a number from 0 to 1", ["0.1", True, None, -0.1, 1.5]),
    ("bert", "attention_probs_dropout_prob", "a number from 0 to 1", ["0.1", None, 2]),
    ("mux-bert", "num_instances", WHOLE, ["two", 2.0, True, None, 0]),
    ("mux-bert", "num_hidden_demux_layers", "a whole number >= 2", ["3", 3.0, None, 1]),
    ("mux-bert", "gaussian_hadamard_norm", "a number >= 0", ["1", None, -1]),
    ("electra", "embedding_size", WHOLE, ["sixteen", 16.0, None, 0]),
    ("roberta", "pad_token_id", "a whole number >= 0", ["one", 1.0, None, -1]),
    *[
        ("distilbert", name, WHOLE, NOT_WHOLE)
        for name in ("n_layers", "dim", "n_heads", "hidden_dim", "vocab_size")
    ],
    ("distilbert", "dropout", "a number from 0 to 1", ["0.1", None, 1.5]),
    ("distilbert", "attention_dropout", "a number from 0 to 1", [False, -1]),
]
BAD_FIELDS = [
    pytest.param(family, name, allowed, value, id=f"{family}-{name}-{json.dumps(value)}")
    for family, name, allowed, values in FIELDS
    for value in values
]


def config_folder(folder: Path, family: str, **fields: Any) -> Path:
    CONFIGS[family]().save_pretrained(folder)
    return edit_config(folder, **fields)


@pytest.mark.parametrize("family, name, allowed, value", BAD_FIELDS)
def test_a_config_field_of_the_wrong_type_is_named_with_its_value(
    family, name, allowed, value, tmp_path
):
    folder = config_folder(tmp_path, family, **{name: value})
    with pytest.raises(CheckpointError) as err:
        check_model(str(folder))
    assert str(err.value) == (
        f"model {str(folder)!r}: config.json {name}: {json.dumps(value)} is not {allowed}"
    )


@pytest.mark.parametrize("family", CONFIGS)
def test_the_configs_of_every_family_pass_as_they_are(family, tmp_path):
    check_model(str(config_folder(tmp_path, family)))


def test_a_missing_field_and_other_wrong_types_are_named(tmp_path):
    def refused(**fields: Any) -> str:
        folder = config_folder(tmp_path, "bert", **fields)  # a fresh config.json each time
        with pytest.raises(CheckpointError) as err:
            check_model(str(folder))
        prefix = f"model {str(folder)!r}: config.json "
        assert str(err.value).startswith(prefix)
        return str(err.value)[len(prefix) :]

    assert refused(hidden_size=...) == "hidden_size: is missing; give a positive whole number"
    assert refused(model_type=["bert"]) == (
        "model_type: ['bert'] is not supported; supported model types: bert, electra, roberta, "
        "xlm-roberta, distilbert"
    )
    assert refused(id2label=["neg", "pos"]) == (
        'id2label: ["neg", "pos"] is not an object of label id: name'
    )
    assert refused(num_instances=2, demuxing_variant="attention") == (
        "demuxing_variant: 'attention' is not one of: index_pos, mlp"
    )
    # as before: a value of the right type that the model cannot take
    assert refused(hidden_size=65) == "num_heads: hidden size 65 is not a multiple of 4"


def test_a_cut_of_a_malformed_config_names_its_field_not_a_type_error(tmp_path):
    """``[model] num_layers`` reads the config's layer count before the architecture does."""
    folder = edit_config(save_random(BERT, tmp_path / "m"), num_hidden_layers="two")
    with pytest.raises(CheckpointError) as err:
        load_pretrained(str(folder), num_layers=1)
    assert str(err.value) == (
        f'model {str(folder)!r}: config.json num_hidden_layers: "two" is not {WHOLE}'
    )


# --- through the CLI: exit code 2, one line, nothing written --------------------------------


def no_tokenizer(folder: Path) -> str:
    """A base model (no head: init would otherwise go on) whose tokenizer files are gone."""
    for path in make_tiny_model(folder).iterdir():
        if path.name not in ("config.json", "model.safetensors"):
            path.unlink()
    return f"model {str(folder)!r}: its folder {NO_TOKENIZER}"


def not_json(folder: Path) -> str:
    make_tiny_model(folder)
    (folder / "config.json").write_text(NOT_JSON)
    return (
        f"model {str(folder)!r}: config.json is not valid JSON (line 2, column 1: "
        "Expecting property name enclosed in double quotes)"
    )


def heads_two(folder: Path) -> str:
    edit_config(make_tiny_model(folder), num_attention_heads="two")
    return f'model {str(folder)!r}: config.json num_attention_heads: "two" is not {WHOLE}'


@pytest.mark.parametrize("make", [no_tokenizer, not_json, heads_two], ids=lambda f: f.__name__)
def test_init_refuses_a_malformed_checkpoint_in_one_line(make, tmp_path, capsys):
    expected = make(tmp_path / "m")
    train = tmp_path / "train.csv"
    train.write_text("text,label\n" + "a fine film,pos\na dull film,neg\n" * 10)
    out = tmp_path / "s.toml"
    argv = ["init", "--train", str(train), "--model", str(tmp_path / "m"), "--out", str(out)]
    capsys.readouterr()  # save_pretrained's progress bar
    code = main(argv)
    printed, err = capsys.readouterr()
    assert "Traceback" not in printed + err
    assert code == 2
    assert err.splitlines() == [f"autoprumux: error: {expected}"]
    assert not out.exists()


def test_a_trained_model_folder_whose_vocabulary_is_gone_is_refused(tmp_path):
    """classify and export read a model folder's own tokenizer: with its vocabulary files
    deleted, transformers built one of the special tokens alone and every text read as
    [UNK]; a trial folder's tokenizer the same."""
    from trainers.deploy.inference import NotAModelError, _tokenizer
    from trainers.model.hf_checkpoint import folder_tokenizer

    folder = make_tiny_model(tmp_path / "model")
    assert len(_tokenizer(folder, "--model m")) > 5 and len(folder_tokenizer(folder)) > 5
    for name in ("vocab.txt", "tokenizer.json"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(NotAModelError, match=r"^--model m: no usable tokenizer \("):
        _tokenizer(folder, "--model m")
    with pytest.raises(CheckpointError, match="no usable tokenizer"):
        folder_tokenizer(folder)
