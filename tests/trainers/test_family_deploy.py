"""Every family's trained model as people use it: a real tiny (2, 0.5) trial of a random-weight
BERT, ELECTRA (tables narrower than the encoder), RoBERTa, XLM-R and DistilBERT, each with a
real tokenizer, exported to ONNX and TorchScript and classified from the folder and the files.
A family's trial and exports are made once (module scope): 5 to 9 s each on 2 quiet cores."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from family_models import FAMILIES, save_with_tokenizer
from glue_tables import preset_tables

from autoprumux.cli.main import main
from autoprumux.core.study import load_study
from trainers.deploy.export import ExportFormat, export_model
from trainers.deploy.inference import Groups, load_text_classifier
from trainers.model.architecture import Family
from trainers.model.checkpoints import load_classifier
from trainers.trial.run import TrialSpec, run_trial

HIDDEN, EMBEDDING = 32, 16  # ELECTRA's tables are EMBEDDING wide, projected to HIDDEN
TOLERANCE = 1e-4  # max |logit difference| of an exported file against PyTorch (fp32, CPU)
# shorter than the tiny study's 60 / 40 / 20 / 20: the point is the folder, not its accuracy
STEPS = {
    "finetune_steps": 20,
    "pruning_steps": 20,
    "lagrangian_warmup_steps": 10,
    "post_pruning_steps": 10,
}
SHORT, LONG = "good film", "the plot was dull and the cast was weak"


def has_onnxruntime() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def glue(tmp_path_factory):
    from fixtures import make_glue

    return make_glue(tmp_path_factory.mktemp("family-glue"))


@pytest.fixture(scope="module", params=FAMILIES)
def deployed(request, tmp_path_factory, glue):
    """One family's (2, 0.5) trial (its warm-up and (2, 0) teacher with it), and its folder
    exported to TorchScript and, where onnxruntime is installed, to ONNX."""
    from fixtures import study_text

    family = request.param
    root = tmp_path_factory.mktemp(f"deploy-{family}")
    model = save_with_tokenizer(
        family,
        root / "model",
        hidden=HIDDEN,
        heads=4,
        intermediate=2 * HIDDEN,
        embedding_size=EMBEDDING if family == "electra" else 0,
    )
    (root / "sst2.toml").write_text(study_text(model, glue, **STEPS))
    result = run_trial(
        TrialSpec(study=load_study(root / "sst2.toml"), n=2, sparsity=0.5, device="cpu")
    )
    assert result.artifact_path is not None, result.reason
    folder = Path(result.artifact_path)
    formats = [ExportFormat.TORCHSCRIPT] + ([ExportFormat.ONNX] if has_onnxruntime() else [])
    exported = {fmt: export_model(folder, fmt, root / f"model{fmt.suffix}") for fmt in formats}
    return SimpleNamespace(family=family, result=result, folder=folder, exported=exported)


def dev_texts(glue: Path) -> list[str]:
    return preset_tables(glue, "sst2").dev["text"].to_pylist()


def test_the_trained_folder_is_the_familys_pruned_multiplexed_shape(deployed):
    model = load_classifier(deployed.folder)
    arch, embeddings = model.arch, model.encoder.embeddings
    assert arch.mux_width == 2 and deployed.result.achieved_sparsity > 0.3
    assert arch.family is Family(deployed.family.replace("xlm-", ""))
    if deployed.family == "electra":  # the tables and the keys stay whole; the projection shrinks
        assert arch.embedding_size == EMBEDDING and embeddings.word.weight.shape[1] == EMBEDDING
        assert embeddings.project is not None and model.mux.keys.shape == (2, EMBEDDING)
        assert embeddings.project.weight.shape == (arch.hidden_size, EMBEDDING)
    else:
        assert embeddings.project is None
        assert embeddings.word.weight.shape[1] == arch.hidden_size
    assert (embeddings.token_type is None) == (deployed.family == "distilbert")
    assert embeddings.padding_idx == (1 if "roberta" in deployed.family else None)


def test_exported_files_compute_pytorchs_logits(deployed, glue):
    texts = dev_texts(glue)
    reference = load_text_classifier(deployed.folder, device="cpu")
    groups, _ = reference.tokenize(texts)  # 64 texts: 32 groups of 2
    expected = reference.backend.logits(groups)
    assert expected.shape == (32, 2, 2)
    for fmt, done in deployed.exported.items():
        assert done.max_abs_diff <= TOLERANCE and done.checked_groups == (1, 3), fmt
        got = load_text_classifier(done.path, device="cpu").backend.logits(groups)
        assert float(np.abs(got - expected).max()) <= TOLERANCE, fmt


def test_classify_gives_the_same_labels_from_the_folder_and_the_exported_files(
    deployed, glue, capsys
):
    dev_tsv = str(glue / "SST-2" / "dev.tsv")
    documents = {}
    files = [(fmt.value, done.path) for fmt, done in deployed.exported.items()]
    for name, source in (("folder", deployed.folder), *files):
        argv = ["classify", "--model", str(source), "--input", dev_tsv, "--json", "--device"]
        assert main([*argv, "cpu"]) == 0, capsys.readouterr().err
        documents[name] = json.loads(capsys.readouterr().out)
    folder = documents.pop("folder")
    # the folder classifies the dev set as the trial evaluated it (its tokens, pad ids, groups)
    assert folder["inputs"] == 64 and folder["accuracy"] == deployed.result.accuracy
    labels = [p["label"] for p in folder["predictions"]]
    assert set(labels) <= {"negative", "positive"}
    positive = np.array([p["probabilities"]["positive"] for p in folder["predictions"]])
    for fmt, document in documents.items():
        assert [p["label"] for p in document["predictions"]] == labels, fmt
        assert document["accuracy"] == folder["accuracy"], fmt
        got = np.array([p["probabilities"]["positive"] for p in document["predictions"]])
        np.testing.assert_allclose(got, positive, atol=1e-5, rtol=0, err_msg=fmt)


def test_padding_no_input_uses_changes_no_logit(deployed):
    """Classify pads every input to the max length with the tokenizer's pad id (RoBERTa's 1) and
    fills the last group with all-padding rows: the same logits as the inputs cut to their own
    tokens (one input alone: its group's filler row is then as short as it)."""
    classifier = load_text_classifier(deployed.folder, device="cpu")
    tokenizer = classifier.tokenizer
    assert tokenizer.pad_token_id == (1 if "roberta" in deployed.family else 0)
    model = load_classifier(deployed.folder).eval()
    for texts in ([SHORT], [SHORT, LONG]):
        groups, _ = classifier.tokenize(texts)
        rows = slice(0, len(texts))  # the inputs' rows of the first group (not its filler)
        padding = groups.attention_mask[0, rows] == 0  # [inputs, max length]
        assert padding.any()
        assert (groups.input_ids[0, rows][padding] == tokenizer.pad_token_id).all()
        got = classifier.backend.logits(groups).reshape(-1, 2)[: len(texts)]
        own = tokenizer(texts, padding="longest", return_tensors="pt", return_token_type_ids=True)
        assert own["input_ids"].shape[1] < classifier.info.max_length
        with torch.no_grad():
            expected = model(own["input_ids"], own["attention_mask"], own["token_type_ids"])
        np.testing.assert_allclose(got, expected.numpy(), atol=1e-5, rtol=0)


def test_token_types_are_read_where_the_family_has_them(deployed):
    """classify always feeds token types (the exported files' third input): DistilBERT, which
    has none, ignores them in every form; RoBERTa's one type is all the tokenizer writes; BERT
    and ELECTRA read theirs."""
    classifier = load_text_classifier(deployed.folder, device="cpu")
    groups, _ = classifier.tokenize([SHORT, LONG, SHORT])
    if "roberta" in deployed.family:
        assert not groups.token_type_ids.any()
        return
    typed = Groups(groups.input_ids, groups.attention_mask, groups.attention_mask.copy())
    for source in (deployed.folder, *(d.path for d in deployed.exported.values())):
        backend = load_text_classifier(source, device="cpu").backend
        if deployed.family == "distilbert":
            np.testing.assert_array_equal(backend.logits(typed), backend.logits(groups))
        else:
            assert np.abs(backend.logits(typed) - backend.logits(groups)).max() > 1e-4
