"""Phase checkpoints: due by steps or by time, written in the background by rename, the last one
kept, and a phase killed at any instant resumed to the uninterrupted loss curve (real
subprocesses, real SIGKILLs)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import trainers.training.loop as loop
from autoprumux.core.study import TrainingSection
from trainers.model.classifier import Classifier
from trainers.pruning.l0 import L0Module
from trainers.training.loop import CheckpointClock, run_phase
from trainers.training.phases import identity_map, pruning_phase

SCRIPT = Path(__file__).with_name("checkpointed_phase.py")
sys.path.insert(0, str(SCRIPT.parent))
from checkpointed_phase import ARCH  # noqa: E402
from random_batches import random_encoded  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """One thread, as the script: fast on a busy machine, and the same sums in every run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pruning(steps: int) -> loop.Phase:
    """The script's phase, in this process (a fresh model from seed 0 each time)."""
    torch.manual_seed(0)
    student, teacher, l0 = Classifier(ARCH), Classifier(ARCH).eval(), L0Module(ARCH)
    training = TrainingSection(batch_rows=4)
    return pruning_phase(
        student,
        teacher,
        l0,
        identity_map(32),
        random_encoded(64),
        training,
        steps,
        steps // 2,
        0.5,
        0,
    )


def losses(phase: loop.Phase, folder: Path | None = None, **kwargs) -> dict[int, float]:
    seen: dict[int, float] = {}
    kwargs.setdefault("checkpoint_minutes", 0.0)
    kwargs.setdefault("checkpoint_every", 0)

    def record(progress) -> None:
        seen[progress.step] = progress.loss
        if "stop_at" in extra and progress.step == extra["stop_at"]:
            raise Stop

    extra = {k: kwargs.pop(k) for k in ("stop_at",) if k in kwargs}
    with contextlib.suppress(Stop):
        run_phase(phase, folder, progress=record, **kwargs)
    return seen


class Stop(Exception):
    pass


def saved_step(folder: Path) -> int:
    return int(json.loads((folder / "state.json").read_text())["step"])


# -- when a checkpoint is due -----------------------------------------------------------------


def test_a_checkpoint_is_due_at_whichever_of_steps_and_minutes_comes_first(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(loop.time, "monotonic", lambda: now[0])
    clock = CheckpointClock(every=10, seconds=60.0, start=0)
    assert not clock.due(9)
    assert clock.due(10)  # by steps
    clock.taken(10)
    now[0] += 59.9
    assert not clock.due(15)
    now[0] += 0.1
    assert clock.due(15)  # by time, a minute after the last one
    clock.taken(15)
    assert not clock.due(24) and clock.due(25)  # steps count from the last one
    by_time = CheckpointClock(every=0, seconds=60.0, start=7)  # 0 steps: by time only
    assert not by_time.due(10_000)
    now[0] += 60.0
    assert by_time.due(7)
    assert CheckpointClock(every=0, seconds=0.0, start=0).due(1)  # 0 minutes: every step


# -- what a checkpoint holds ------------------------------------------------------------------


def test_a_resumed_phase_draws_the_same_masks_and_follows_the_same_curve(tmp_path):
    whole = losses(pruning(30))
    folder = tmp_path / "ckpt"
    first = losses(pruning(30), folder, checkpoint_every=10, checkpoint_minutes=60, stop_at=17)
    assert saved_step(folder) == 10  # the step-based one (17 was never due)
    second = losses(pruning(30), folder, checkpoint_every=10, checkpoint_minutes=60)
    assert min(second) == 11 and max(second) == 30
    assert first == {s: whole[s] for s in range(1, 18)}
    assert second == {s: whole[s] for s in range(11, 31)}  # exactly: dropout and gates drawn again
    assert not folder.exists() and not list(tmp_path.iterdir())  # nothing left once done


def test_a_checkpoint_of_the_previous_format_still_resumes(tmp_path):
    """Written as before (no random states): it resumes at its step, with the process's draws."""
    folder = tmp_path / "ckpt"
    losses(pruning(30), folder, checkpoint_every=10, checkpoint_minutes=60, stop_at=12)
    state = torch.load(folder / "optimizer.pt", weights_only=True)
    assert set(state["rng"]) == {"cpu"}  # on a CPU
    del state["rng"]
    torch.save(state, folder / "optimizer.pt")
    second = losses(pruning(30), folder, checkpoint_every=10, checkpoint_minutes=60)
    assert min(second) == 11 and max(second) == 30


def test_a_checkpoints_files_follow_the_umask_so_another_user_can_resume_it(tmp_path):
    """safetensors writes 0600; a team's shared storage resumes a killed trial as anyone."""
    folder = tmp_path / "ckpt"
    kept = os.umask(0o022)
    try:
        losses(pruning(12), folder, checkpoint_every=10, checkpoint_minutes=60, stop_at=11)
    finally:
        os.umask(kept)
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert modes == {"weights.safetensors": 0o644, "optimizer.pt": 0o644, "state.json": 0o644}


def test_leftovers_of_a_kill_mid_replacement_resume_the_newest_whole_checkpoint(tmp_path):
    folder = tmp_path / "ckpt"
    losses(pruning(30), folder, checkpoint_every=10, checkpoint_minutes=60, stop_at=25)
    assert saved_step(folder) == 20
    partial, old = (tmp_path / "ckpt.partial", tmp_path / "ckpt.old")
    # killed after the previous one was moved aside, before the new one took its place
    folder.rename(partial)
    old.mkdir()
    (old / "state.json").write_text('{"step": 10, "phase": "prune"}')  # cut short: not whole
    second = losses(pruning(30), folder, checkpoint_every=10, checkpoint_minutes=60)
    assert min(second) == 21
    assert not list(tmp_path.iterdir())
    # killed while writing the next one: a half-written .partial beside a whole checkpoint
    losses(pruning(30), folder, checkpoint_every=10, checkpoint_minutes=60, stop_at=25)
    partial.mkdir()
    (partial / "weights.safetensors").write_bytes(b"\0" * 7)
    third = losses(pruning(30), folder, checkpoint_every=10, checkpoint_minutes=60)
    assert min(third) == 21 and not list(tmp_path.iterdir())


# -- written in the background ----------------------------------------------------------------


def test_the_step_loop_goes_on_while_a_checkpoint_is_written_and_waits_at_its_end(
    tmp_path, monkeypatch
):
    """A write held open: the steps go on, no second write starts (the due one waits for a
    step at which the writer is free), and the phase ends only once the write has."""
    release, writing = threading.Event(), threading.Event()
    writes: list[int] = []
    real = loop.write_checkpoint

    def slow_write(snapshot, folder):
        writes.append(snapshot.step)
        writing.set()
        release.wait(timeout=30)
        real(snapshot, folder)

    monkeypatch.setattr(loop, "write_checkpoint", slow_write)
    folder = tmp_path / "ckpt"
    steps_during_write: list[int] = []
    overhead: list[float] = []

    def on_progress(progress) -> None:
        if writing.is_set() and not release.is_set():
            steps_during_write.append(progress.step)
            if len(steps_during_write) == 5:
                release.set()  # let the first write finish after 5 more steps

    run_phase(
        pruning(20),
        folder,
        checkpoint_every=0,
        checkpoint_minutes=0.0,
        progress=on_progress,
        checkpoint_seconds=overhead.append,
    )
    assert writes[0] == 1 and steps_during_write[:5] == [2, 3, 4, 5, 6]
    assert writes[1] >= 6  # the next began once the first was written, not at steps 2..5
    assert [t for t in threading.enumerate() if t.name.startswith("checkpoint")] == []
    assert len(overhead) == 1 and overhead[0] >= 0.0
    assert not folder.exists()


def test_a_failing_phase_waits_for_its_write_and_leaves_it_whole(tmp_path, monkeypatch):
    release = threading.Event()
    real = loop.write_checkpoint

    def slow_write(snapshot, folder):
        release.wait(timeout=30)
        real(snapshot, folder)

    monkeypatch.setattr(loop, "write_checkpoint", slow_write)
    folder = tmp_path / "ckpt"

    def fail_at_3(progress) -> None:
        if progress.step == 3:
            threading.Timer(0.3, release.set).start()  # the write ends after the failure
            raise Stop

    with pytest.raises(Stop):
        run_phase(pruning(20), folder, 0, fail_at_3, checkpoint_minutes=0.0)
    assert [t for t in threading.enumerate() if t.name.startswith("checkpoint")] == []
    assert saved_step(folder) == 1  # the write begun at step 1, finished before the raise
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_failing_check_saves_its_step_synchronously(tmp_path):
    folder = tmp_path / "ckpt"

    def check(step: int) -> None:
        raise Stop

    with pytest.raises(Stop):
        run_phase(pruning(20), folder, 5, check=check, check_steps={7}, checkpoint_minutes=60)
    assert saved_step(folder) == 7  # not the background one of step 5
    assert [t for t in threading.enumerate() if t.name.startswith("checkpoint")] == []


def test_a_failed_write_fails_the_phase(tmp_path, monkeypatch):
    def broken(snapshot, folder):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(loop, "write_checkpoint", broken)
    with pytest.raises(OSError, match="No space left"):
        run_phase(pruning(10), tmp_path / "ckpt", 2, checkpoint_minutes=60)


# -- killed at any instant --------------------------------------------------------------------


def run_script(steps: int, folder: Path | None = None) -> subprocess.Popen[str]:
    args = [sys.executable, str(SCRIPT), str(steps), *([str(folder)] if folder else [])]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def printed(lines: list[str]) -> dict[int, str]:
    """step -> loss (its exact decimal form) of the lines a run printed whole."""
    pairs = [line.split() for line in lines if line.endswith("\n") and line != "done\n"]
    return {int(step): loss for step, loss in pairs}


@pytest.mark.slow  # about 30 s on 2 cores: five processes of torch
def test_a_phase_killed_at_random_instants_resumes_to_the_same_loss_curve(tmp_path):
    steps, folder = 400, tmp_path / "ckpt"
    reference = run_script(steps)  # uninterrupted, no checkpoints; runs beside the kills
    chance = random.Random(36)
    runs: list[dict[int, str]] = []
    left: list[list[str]] = []  # what each kill left (shown by -s)
    for _ in range(4):
        process = run_script(steps, folder)
        assert process.stdout is not None
        lines = [process.stdout.readline()]  # the first step of this run: it is training
        reader = threading.Thread(target=lines.extend, args=(process.stdout,))
        reader.start()
        time.sleep(chance.uniform(0.05, 0.6))  # at any instant: mid-step, mid-write, ...
        process.send_signal(signal.SIGKILL)
        process.wait()
        reader.join()
        assert process.returncode == -signal.SIGKILL, process.stderr.read()  # type: ignore[union-attr]
        runs.append(printed(lines))
        left.append(sorted(p.name for p in tmp_path.iterdir()))
        if max(runs[-1]) == steps:  # it ended before the kill (which hit its exit): no resume
            break
    else:
        last = run_script(steps, folder)
        out, err = last.communicate(timeout=300)
        assert last.returncode == 0, err
        runs.append(printed(out.splitlines(keepends=True)))
    out, err = reference.communicate(timeout=300)
    assert reference.returncode == 0, err
    whole = printed(out.splitlines(keepends=True))
    assert sorted(whole) == list(range(1, steps + 1))
    firsts = [min(run) for run in runs]
    for before, run in zip(runs, runs[1:], strict=False):
        # resumed from a step it had reached, at most a few behind its last (a write lags)
        assert min(before) <= min(run) <= max(before) + 1
    assert max(firsts) > 1, "no run resumed: nothing was tested"
    print("runs (first, last step):", [(min(r), max(r)) for r in runs], "left:", left)
    assert max(runs[-1]) == steps
    for run in runs:
        assert run == {step: whole[step] for step in run}  # the same loss, to the last bit
    assert not list(tmp_path.iterdir())  # done: no checkpoint, .partial or .old left


# -- what they cost, in the trial's record ----------------------------------------------------


def test_checkpoint_seconds_are_a_span_inside_their_phase_not_a_cost_of_their_own():
    from autoprumux.core.records import TrialStatus
    from trainers.trial.trial_results import GUIDE_PREFIX, SpanTimer, TrialResult

    timer = SpanTimer()
    timer.add("finetune checkpoints", 0.5)
    guide = timer.prefixed(GUIDE_PREFIX)
    guide.add("finetune checkpoints", 0.25)
    guide.add("finetune checkpoints", 0.25)
    timer.seconds.update({"finetune": 10.0, "guide finetune": 4.0, "prune": 6.0})
    assert timer.seconds["guide finetune checkpoints"] == 0.5
    result = TrialResult(
        task="t", n=2, sparsity=0.5, status=TrialStatus.COMPLETE,
        phase_seconds=timer.seconds, wall_time_s=30.0,
    )  # fmt: skip
    assert result.cost_parts() == (0.0, 14.0, 16.0)  # teacher: finetune + guide finetune
