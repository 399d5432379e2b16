"""The PruMUX phases and run_trial on a tiny random BERT (seconds each)."""

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from glue_tables import preset_encoded
from torch import nn

from autoprumux.cli.main import main
from autoprumux.core.budget import NEAR_MISS
from autoprumux.core.errors import DataError
from autoprumux.core.grid import GridPoint
from autoprumux.core.records import TrialStatus
from autoprumux.core.study import TrainingSection, WarmupSection, load_study
from trainers.data.splits import Encoded, read_unlabelled_text
from trainers.model.architecture import MuxStyle, prunable_params
from trainers.model.checkpoints import load_pretrained
from trainers.model.classifier import Classifier
from trainers.pruning.l0 import L0Module
from trainers.pruning.materialize import materialize
from trainers.training.loop import run_phase
from trainers.training.phases import (
    accuracy,
    confusion,
    finetune_phase,
    identity_map,
    pruning_phase,
    token_mse,
    warmup_phase,
)
from trainers.training.retrieval import RetrievalHead, token_recovery
from trainers.trial.cache_keys import warmup_folder
from trainers.trial.run import TrialResult, TrialSpec, run_trial


@pytest.fixture
def tiny(tiny_sources, tiny_study_file):
    from transformers import AutoTokenizer

    model_dir, glue = tiny_sources
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    train, dev = preset_encoded(glue, tokenizer, 16)
    return load_study(tiny_study_file()), str(model_dir), train, dev


def losses_of(phase, **kwargs):
    seen = []
    run_phase(phase, progress=lambda p: seen.append(p.loss), **kwargs)
    return seen


def mean(values):
    return sum(values) / len(values)


def test_finetuning_learns_the_task(tiny):
    study, model_dir, train, dev = tiny
    torch.manual_seed(0)
    model, _ = load_pretrained(model_dir)
    losses = losses_of(finetune_phase(model, train, 60, 3e-3, 8, 0, study.training))
    assert mean(losses[-10:]) < 0.5 * mean(losses[:10])
    assert accuracy(model, dev) > 0.9


def test_retrieval_warmup_recovers_tokens(tiny):
    study, model_dir, train, dev = tiny
    torch.manual_seed(0)
    model, _ = load_pretrained(model_dir, mux_width=2, key_norm=0.0)
    head = RetrievalHead(model)
    before = token_recovery(model, head, dev)
    losses = losses_of(warmup_phase(model, head, train, study.warmup, 0, 100))
    assert mean(losses[-10:]) < 0.6 * mean(losses[:10])
    assert token_recovery(model, head, dev) > before + 0.2


def test_mlm_phase_runs_and_learns(tiny):
    study, model_dir, train, _ = tiny
    torch.manual_seed(0)
    model, _ = load_pretrained(model_dir, mux_width=2, key_norm=0.0)
    losses = losses_of(
        warmup_phase(model, RetrievalHead(model), train, study.warmup, 0, 60, mask_token_id=4)
    )
    assert mean(losses[-10:]) < mean(losses[:10])


@pytest.mark.parametrize("width", [1, 2])
def test_pruning_moves_toward_the_target_and_lands_on_it(tiny, width):
    study, model_dir, train, dev = tiny
    torch.manual_seed(0)
    teacher, _ = load_pretrained(model_dir, mux_width=width, key_norm=0.0)
    run_phase(finetune_phase(teacher, train, 60, 3e-3, 8, 0, study.training))
    student, _ = load_pretrained(model_dir, mux_width=width, key_norm=0.0)
    student.load_state_dict(teacher.state_dict())
    l0 = L0Module(student.arch)
    sparsities = []
    phase = pruning_phase(
        student, teacher, l0, identity_map(32), train, study.training, 80, 40, 0.6, 0
    )
    run_phase(phase, progress=lambda p: sparsities.append(l0.expected_sparsity().item()))
    assert sparsities[-1] > sparsities[40]  # the Lagrangian pushes the expected sparsity up
    assert l0.lambda_1.item() != 0.0  # the multipliers moved
    small = materialize(student, l0.calibrated(0.6))
    achieved = 1 - prunable_params(small.arch) / prunable_params(student.arch)
    assert abs(achieved - 0.6) <= 0.02


def test_run_trial_reuses_the_teacher(tiny_study_file):
    study = load_study(tiny_study_file())
    first = run_trial(TrialSpec(study=study, n=1, sparsity=0.0))
    assert first.status is TrialStatus.COMPLETE and "finetune" in first.phase_seconds
    assert first.accuracy > 0.9 and first.achieved_sparsity == 0.0 and first.throughput > 0
    pruned = run_trial(TrialSpec(study=study, n=1, sparsity=0.5))
    assert pruned.reused == ("teacher",) and "finetune" not in pruned.phase_seconds
    assert abs(pruned.achieved_sparsity - 0.5) <= 0.02
    assert pruned.parameters < first.parameters
    again = run_trial(
        TrialSpec(study=study, n=1, sparsity=0.5)
    )  # a finished trial is not trained again
    assert again.reused == ("teacher", "trial") and again.accuracy == pruned.accuracy
    record = pruned.to_record()
    assert (record.n, record.sparsity, record.accuracy) == (1, 0.5, pruned.accuracy)
    # the (1, 0) model it was pruned from comes with it: the search records that point free
    training = pruned.training()
    assert training.record == record and len(training.by_products) == 1
    teacher = training.by_products[0]
    assert (teacher.n, teacher.sparsity, teacher.accuracy) == (1, 0.0, first.accuracy)
    assert teacher.artifact_path == first.artifact_path and teacher.throughput > 0
    assert first.training().by_products == ()


def test_multiplexed_trial_records_its_warmup(tiny_study_file):
    study = load_study(tiny_study_file())
    result = run_trial(TrialSpec(study=study, n=2, sparsity=0.5))
    assert result.status is TrialStatus.COMPLETE and 0 < result.token_recovery <= 1
    assert {"warmup", "finetune", "prune", "post-finetune"} <= set(result.phase_seconds)
    warmups = list((study.folder / "artifacts" / "warmup").iterdir())
    assert [p.name for p in warmups if p.is_dir()] and not [
        p for p in warmups if p.name.endswith(".partial")
    ]
    (folder,) = [p for p in warmups if p.is_dir()]
    recorded = json.loads((folder / "warmup.json").read_text())
    numerics = recorded.pop("numerics")
    assert recorded == {
        "token_recovery": result.token_recovery,
        "steps": 2 * study.warmup.steps_per_instance,
        "mlm_steps": 0,
    }
    # what decided the numbers: the trial's device, precision and threads (every core)
    assert (numerics["device"], numerics["precision"]) == ("cpu", "fp32")
    assert numerics["threads"] == os.cpu_count() and numerics["torch"] == torch.__version__
    assert (
        result.numerics
        == json.loads((Path(result.artifact_path) / "result.json").read_text())["numerics"]
    )


def test_task_dropout_keys_the_task_artifacts_not_the_warmup(tiny_study_file):
    own = run_trial(TrialSpec(study=load_study(tiny_study_file()), n=2, sparsity=0.0))
    assert own.reused == ()
    none = run_trial(TrialSpec(study=load_study(tiny_study_file(dropout=0.0)), n=2, sparsity=0.0))
    assert none.reused == ("warmup",) and none.artifact_path != own.artifact_path
    assert none.status is TrialStatus.COMPLETE


def test_distilling_from_n1_builds_the_n1_teacher_first(tiny_study_file):
    plain = run_trial(TrialSpec(study=load_study(tiny_study_file()), n=2, sparsity=0.0))
    path = tiny_study_file()
    path.write_text(
        path.read_text().replace("[training]\n", "[training]\ndistill_from_n1 = true\n")
    )
    study = load_study(path)
    guided = run_trial(TrialSpec(study=study, n=2, sparsity=0.0))
    assert guided.reused == ("warmup",) and guided.artifact_path != plain.artifact_path
    assert guided.status is TrialStatus.COMPLETE
    assert run_trial(TrialSpec(study=study, n=1, sparsity=0.0)).reused == (
        "teacher",
    )  # built by the N = 2 run


def test_a_diverging_trial_fails_with_its_reason(tiny_study_file):
    study = load_study(tiny_study_file(finetune_learning_rate=1e30))
    result = run_trial(TrialSpec(study=study, n=1, sparsity=0.0))
    assert result.status is TrialStatus.FAILED
    assert result.reason.startswith("finetune: loss is nan") or "loss is inf" in result.reason
    finished = [
        p
        for p in study.artifacts_folder.iterdir()
        if p.is_dir() and not p.name.endswith(".partial") and p.name != "data"  # token ids
    ]
    assert finished == []  # no teacher that looks finished is left behind


def test_an_interrupted_phase_resumes_from_its_checkpoint(tiny_study_file):
    study = load_study(tiny_study_file())

    class Interrupt(Exception):
        pass

    def stop_at_25(progress):
        if progress.step == 25:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_trial(TrialSpec(study=study, n=1, sparsity=0.0), progress=stop_at_25)
    partial = next(study.artifacts_folder.glob("teacher-n1-*.partial"))
    assert json.loads((partial / "finetune-checkpoint" / "state.json").read_text())["step"] == 20
    steps = []
    result = run_trial(
        TrialSpec(study=study, n=1, sparsity=0.0), progress=lambda p: steps.append(p.step)
    )
    assert steps[0] == 21 and steps[-1] == 60  # continued, not started over
    assert result.status is TrialStatus.COMPLETE and not partial.exists()


def test_cli_train_json_end_to_end(tiny_study_file, capsys):
    path = tiny_study_file()
    code = main(["train", "--study", str(path), "--n", "2", "--sparsity", "0.5", "--json"])
    out, err = capsys.readouterr()
    assert code == 0
    result = json.loads(out)
    assert result["status"] == "complete" and result["n"] == 2 and result["sparsity"] == 0.5
    assert abs(result["achieved_sparsity"] - 0.5) <= 0.02 and 0 <= result["accuracy"] <= 1
    assert Path(result["artifact_path"]).is_dir()
    assert (result["teacher"]["n"], result["teacher"]["sparsity"]) == (2, 0.0)
    assert TrialResult.from_json(result).teacher.accuracy == result["teacher"]["accuracy"]
    # the task's label names, the fixture SST-2's, as the model folder records them
    assert result["labels"] == result["teacher"]["labels"] == ["negative", "positive"]
    assert TrialResult.from_json(result).labels == ("negative", "positive")
    assert "prune" in err  # the progress bars go to stderr


@pytest.mark.slow  # over 20 s on 2 cores
def test_concurrent_trials_of_one_n_train_one_teacher(tiny_study_file):
    path = tiny_study_file()
    command = [
        sys.executable,
        "-m",
        "autoprumux",
        "train",
        "--study",
        str(path),
        "--n",
        "1",
        "--json",
    ]
    runs = [
        subprocess.Popen(
            [*command, "--sparsity", s],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for s in ("0.4", "0.6")
    ]
    results = [json.loads(run.communicate(timeout=300)[0]) for run in runs]
    assert [r["status"] for r in results] == ["complete", "complete"]
    assert sorted("teacher" in r["reused"] for r in results) == [False, True]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text.replace('task = "sst2"', 'task = "mnli"'), "MNLI/train.tsv"),
        (
            lambda text: text.replace('task = "sst2"', 'task = "cola"'),
            "study.task: 'cola' is not one of",
        ),
    ],
)
def test_bad_studies_exit_2(tiny_study_file, capsys, edit, message, tmp_path):
    path = tiny_study_file()
    if "MNLI" in message:  # a GLUE folder without the task's files
        empty = tmp_path / "empty-glue"
        empty.mkdir()
        text = path.read_text()
        text = text.replace(text.split('glue_dir = "')[1].split('"')[0], str(empty))
        path.write_text(edit(text))
    else:
        path.write_text(edit(path.read_text()))
    code = main(["train", "--study", str(path), "--n", "1", "--sparsity", "0"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_a_model_that_is_not_a_bert_exits_2(tiny_study_file, capsys, tmp_path):
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    path = tiny_study_file()
    text = path.read_text()
    path.write_text(text.replace(text.split('name_or_path = "')[1].split('"')[0], str(gpt)))
    code = main(["train", "--study", str(path), "--n", "1", "--sparsity", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "'gpt2' is not supported; supported model types" in err


def test_cli_warmup_builds_once(tiny_study_file, capsys):
    path = tiny_study_file()
    assert main(["warmup", "--study", str(path), "--n", "2", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert 0 < first["token_recovery"] <= 1 and not first["reused"]
    assert Path(first["artifact_path"]).is_dir()
    assert main(["warmup", "--study", str(path), "--n", "2", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["reused"] and again["token_recovery"] == first["token_recovery"]
    # the trial of the same N picks the artifact up
    result = run_trial(TrialSpec(study=load_study(path), n=2, sparsity=0.0))
    assert "warmup" in result.reused
    assert main(["warmup", "--study", str(path), "--n", "1"]) == 2  # N >= 2


def test_warmup_on_named_text_is_shared_across_tasks(tiny_study_file, capsys):
    path = tiny_study_file()
    corpus = path.parent / "corpus.txt"
    corpus.write_text("the film was good .\n\n" + "the plot was bad , a fine cast .\n" * 40)
    default_folder = warmup_folder(load_study(path), 2, 0)
    text = path.read_text().replace("[warmup]\n", '[warmup]\ntext = "corpus.txt"\n')
    path.write_text(text)
    assert main(["warmup", "--study", str(path), "--n", "2", "--json"]) == 0
    built = json.loads(capsys.readouterr().out)
    assert Path(built["artifact_path"]) != default_folder
    assert "-n2-corpus-" in Path(built["artifact_path"]).name and not built["reused"]
    # another task naming the same text reuses it; an edited text does not
    other = path.with_name("other.toml")
    other.write_text(text.replace('task = "sst2"', 'task = "qnli"'))
    assert warmup_folder(load_study(other), 2, 0) == Path(built["artifact_path"])
    corpus.write_text("another corpus .\n")
    assert warmup_folder(load_study(path), 2, 0) != Path(built["artifact_path"])
    corpus.unlink()
    assert main(["warmup", "--study", str(path), "--n", "2"]) == 2
    assert "[warmup] text" in capsys.readouterr().err.splitlines()[-1]


def test_unlabelled_text_reader_skips_blank_lines(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(" a b \n\n  \nc\n")
    split = read_unlabelled_text("c.txt", lambda p: tmp_path / p)
    assert split.texts == (("a b",), ("c",)) and split.labels == (0, 0)
    corpus.write_text("\n")
    with pytest.raises(DataError, match="holds no text"):
        read_unlabelled_text("c.txt", lambda p: tmp_path / p)


def test_a_hopeless_teacher_stops_at_its_first_check_and_resumes_later(tiny_study_file):
    from autoprumux.core.early_stop import StopPhase, StopRule

    study = load_study(tiny_study_file(finetune_steps=200))
    # no accuracy plus a margin of 0.01 reaches 1.5: the check after 1/4 stops the training
    rule = StopRule(threshold=1.5, margins=((0.25, 0.01), (0.5, 0.01), (0.75, 0.01)))
    stopped = run_trial(TrialSpec(study=study, n=1, sparsity=0.5, stop=rule))
    assert stopped.status is TrialStatus.STOPPED
    evidence = stopped.stop
    assert (evidence.point, evidence.phase, evidence.step, evidence.steps) == (
        GridPoint(1, 0.0),
        StopPhase.FINETUNE,
        50,
        200,
    )
    assert evidence.margin == 0.01 and evidence.threshold == 1.5
    assert stopped.curve.points == ((50, evidence.accuracy),)
    record = stopped.to_record()
    assert (record.stop_step, record.stop_accuracy, record.accuracy_bound) == (
        50,
        evidence.accuracy,
        evidence.accuracy + 0.01,
    )
    assert record.teacher_s > 0 and record.warmup_s == 0 and record.own_s >= 0
    # the teacher stopped: the (1, 0) point is recorded as a miss with the trial
    (teacher,) = stopped.training().by_products
    assert teacher.point == GridPoint(1, 0.0) and teacher.status is TrialStatus.STOPPED
    # the teacher's phase was checkpointed at the check: without the rule it continues from
    # step 50 (not from its last every-10-steps checkpoint before it) and keeps its curve
    full = run_trial(TrialSpec(study=study, n=1, sparsity=0.0, curve_points=4))
    assert full.status is TrialStatus.COMPLETE and full.reused == ()
    steps = [s for s, _ in full.curve.points]
    assert steps == [50, 100, 150, 200] and full.curve.points[0] == (50, evidence.accuracy)
    assert full.curve.final == full.accuracy
    # a phase too short for its checks to pay is not checked
    assert rule.checks(60, 8 / 3) == {}
    assert rule.checks(200, 8 / 3) == {50: 0.01, 100: 0.01, 150: 0.01}
    # a pruned point whose teacher ends more than a near miss under the threshold stops before
    # its pruning: the teacher is reused and recorded complete, the point a miss bounded by its
    # accuracy + the near miss
    above = StopRule(threshold=full.accuracy + 0.02, margins=rule.margins)
    pruned = run_trial(TrialSpec(study=study, n=1, sparsity=0.5, stop=above))
    assert pruned.status is TrialStatus.STOPPED and pruned.reused == ("teacher",)
    assert "prune" not in pruned.phase_seconds
    evidence = pruned.stop
    assert (evidence.point, evidence.phase, evidence.step, evidence.steps) == (
        GridPoint(1, 0.0),
        StopPhase.TEACHER_MISSED,
        200,
        200,
    )
    assert (evidence.accuracy, evidence.margin) == (full.accuracy, NEAR_MISS)
    assert pruned.to_record().accuracy_bound == full.accuracy + NEAR_MISS
    assert "stopped before pruning" in pruned.reason
    (teacher,) = pruned.training().by_products
    assert teacher.status is TrialStatus.COMPLETE and teacher.accuracy == full.accuracy


def test_the_layer_loss_averages_over_real_tokens():
    student = torch.zeros(1, 3, 2)
    teacher = torch.tensor([[[1.0, 1.0], [2.0, 2.0], [5.0, 5.0]]])  # the last position: padding
    assert token_mse(student, teacher, torch.tensor([[1, 1, 0]])).item() == 2.5  # (1+1+4+4)/4
    assert token_mse(student, teacher, None).item() == 10.0  # CoFi's: (1+1+4+4+25+25)/6


@pytest.mark.parametrize("width", [1, 2])
def test_the_pruning_loss_of_a_batch_is_the_loss_of_its_cut(tiny_arch, width):
    """With the layer loss over real tokens, cutting padding no example uses changes no term of
    CoFi's loss (logit KL, layer MSE, Lagrangian), so the pruning phase may cut its batches."""
    arch = tiny_arch.with_mux(width) if width > 1 else tiny_arch
    torch.manual_seed(0)
    lengths = torch.tensor([3, 9, 2, 6, 4, 8, 5, 7])
    mask = (torch.arange(20)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1, 200, mask.shape) * mask
    padded = Encoded(ids, mask, torch.zeros_like(ids), torch.randint(0, 2, (8,)))
    teacher, student = Classifier(arch).eval(), Classifier(arch).eval()  # no dropout
    training = TrainingSection(batch_rows=8 // width)
    phase = pruning_phase(
        student, teacher, L0Module(arch), nn.Linear(32, 32), padded, training, 2, 4, 0.5, 0
    )
    losses = []
    for batch in (padded, padded.truncated(9)):
        torch.manual_seed(1)  # the same sampled masks
        losses.append(phase.loss(batch, torch.tensor(1.0, dtype=torch.float64)).item())
    assert losses[0] == pytest.approx(losses[1], abs=1e-5) and losses[0] > 0
    # CoFi's average over every position would differ: the padding's outputs differ
    teacher_layers: list[torch.Tensor] = []
    teacher(ids, mask, collect=teacher_layers)
    student_layers: list[torch.Tensor] = []
    student(ids, mask, collect=student_layers)
    whole = F.mse_loss(student_layers[-1], teacher_layers[-1])
    cut = F.mse_loss(student_layers[-1][:, :9], teacher_layers[-1][:, :9])
    assert abs(whole.item() - cut.item()) > 1e-3


def test_phases_cut_padding_where_it_changes_nothing_and_only_there(tiny_arch):
    """Fine-tuning, distillation, pruning, the warm-up and evaluation run on batches cut to
    their longest example, except with a multiplexed PUBLISHED model (it attends to padding);
    ``group_by_length`` groups the rows of N by length."""
    torch.manual_seed(0)
    lengths = torch.tensor([3, 9, 2, 6, 4, 8, 5, 7] * 4)
    mask = (torch.arange(20)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1, 200, mask.shape) * mask
    data = Encoded(ids, mask, torch.zeros_like(ids), torch.randint(0, 2, (len(ids),)))
    training = TrainingSection(batch_rows=4)
    one, two = Classifier(tiny_arch), Classifier(tiny_arch.with_mux(2))
    published = Classifier(tiny_arch.with_mux(2, mux_style=MuxStyle.PUBLISHED))
    head = RetrievalHead(two)

    def width_of(phase) -> int:  # type: ignore[no-untyped-def]
        return int(next(phase.data(0)).input_ids.shape[1])

    def longest_of(phase) -> int:  # type: ignore[no-untyped-def]
        return int(next(phase.data(0)).attention_mask.sum(1).max())

    def epoch_of(phase) -> list[Encoded]:  # type: ignore[no-untyped-def]
        return list(itertools.islice(phase.data(0), 8))

    cut = [
        finetune_phase(one, data, 2, 1e-3, 4, 0, training),
        finetune_phase(two, data, 2, 1e-3, 4, 0, training, teacher=one),
        warmup_phase(two, head, data, WarmupSection(batch_rows=4), 0, 2),
        pruning_phase(
            one, one, L0Module(tiny_arch), identity_map(32), data, training, 2, 1, 0.5, 0
        ),
    ]
    assert all(width_of(p) == longest_of(p) < 20 for p in cut)
    uncut = [
        finetune_phase(published, data, 2, 1e-3, 4, 0, training),
        pruning_phase(
            published,
            published,
            L0Module(published.arch),
            identity_map(32),
            data,
            training,
            2,
            1,
            0.5,
            0,
        ),
    ]
    assert all(width_of(p) == 20 for p in uncut)
    # grouped: the 32 sentences hold each of 8 lengths 4 times, so at N = 1 every batch of 4
    # is of one length; at N = 2 the rows keep their random pairs, and batches of 2 rows pair
    # the rows of neighbouring longest sentences
    grouping = TrainingSection(batch_rows=2, group_by_length=True)
    ungrouped = TrainingSection(batch_rows=2)
    for phase in (
        finetune_phase(one, data, 2, 1e-3, 4, 0, grouping),
        pruning_phase(
            one, one, L0Module(tiny_arch), identity_map(32), data, grouping, 2, 1, 0.5, 0
        ),
    ):
        assert all(b.attention_mask.sum(1).unique().numel() == 1 for b in epoch_of(phase))
    for grouped, plain in [
        (
            finetune_phase(two, data, 2, 1e-3, 2, 0, grouping, teacher=one),
            finetune_phase(two, data, 2, 1e-3, 2, 0, ungrouped, teacher=one),
        ),
        (
            warmup_phase(two, head, data, WarmupSection(batch_rows=2, group_by_length=True), 0, 2),
            warmup_phase(two, head, data, WarmupSection(batch_rows=2), 0, 2),
        ),
        (
            pruning_phase(
                two, two, L0Module(two.arch), identity_map(32), data, grouping, 2, 1, 0.5, 0
            ),
            pruning_phase(
                two, two, L0Module(two.arch), identity_map(32), data, ungrouped, 2, 1, 0.5, 0
            ),
        ),
    ]:
        rows = sorted(
            int(row.max()) for b in epoch_of(plain) for row in b.attention_mask.sum(1).view(-1, 2)
        )
        widths = [b.input_ids.shape[1] for b in epoch_of(grouped)]
        assert sorted(widths) == rows[1::2] and widths != sorted(widths)
    # evaluation on cut batches: the accuracy of the padded batches, example for example
    with torch.no_grad():
        right = sum(
            int((two.eval()(*batch[:3]).argmax(-1) == batch[3]).sum())
            for batch in [
                (ids[i : i + 8], mask[i : i + 8], None, data.labels[i : i + 8])
                for i in range(0, len(ids), 8)
            ]
        )
    assert accuracy(two, data, batch_rows=4) == right / len(ids)


@pytest.mark.parametrize("width", [1, 2])
def test_the_confusion_matrix_counts_each_batchs_argmax(tiny_arch, width):
    """confusion[gold][predicted] of a random 3-label model on examples of random lengths,
    against the argmax of every batch counted by hand (the same consecutive batches: N > 1
    mixes an example with its neighbours); its diagonal share is the accuracy, exactly."""
    torch.manual_seed(3)
    arch = tiny_arch.with_mux(width, num_labels=3)
    model = Classifier(arch).eval()
    lengths = torch.randint(2, 12, (22,))  # 22: a last batch of 4 (batch_rows 3 x N = 2)
    mask = (torch.arange(12)[None, :] < lengths[:, None]).long()
    ids = torch.randint(1, 200, mask.shape) * mask
    gold = torch.randint(0, 3, (22,))
    data = Encoded(ids, mask, torch.zeros_like(ids), gold)
    size = 3 * width
    by_hand = [[0] * 3 for _ in range(3)]
    with torch.no_grad():
        for start in range(0, 22, size):
            predicted = model(ids[start : start + size], mask[start : start + size]).argmax(-1)
            for g, p in zip(gold[start : start + size].tolist(), predicted.tolist(), strict=True):
                by_hand[g][p] += 1
    counts = confusion(model, data, batch_rows=3)
    assert counts == by_hand and sum(map(sum, counts)) == 22
    right = sum(by_hand[k][k] for k in range(3))
    assert accuracy(model, data, batch_rows=3) == right / 22
    # num_labels given: the matrix's size (a model with more logits than the data's labels)
    assert confusion(model, data, batch_rows=3, num_labels=3) == by_hand
