"""The study of a bare ``autoprumux search`` (no --study): the task's default study file,
found in ./studies, the checkout's studies/ or the studies an installed wheel carries (copied
into ./studies so that its database, artifacts and report land in the current folder); and
the one-line refusal of a task that has no CPU study on a machine without a GPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from autoprumux.core.errors import FieldError
from autoprumux.core.tasks import TASKS
from autoprumux.embedded import checkout_studies, copy_studies, packaged_studies


def find_default_study(
    task: str | None, gpus: float | None, echo: Callable[[str], None], copy: bool = True
) -> Path:
    """The task's default study (sst2's without --task), said in one line; ``copy``: as
    :func:`default_study_path` (a dry run copies nothing)."""
    if task is not None and task not in TASKS:
        raise FieldError("--task", f"{task!r} is not one of: {', '.join(TASKS)}")
    present = cuda_available()
    path = default_study_path(task or "sst2", present or bool(gpus), echo, copy=copy)
    why = (
        "a GPU is present"
        if present
        else f"--gpus {gpus:g}: the study sized for GPUs"
        if gpus
        else "no GPU here: the embedded default"
    )
    echo(f"study: {path} ({why})")
    return path


def cpu_study_tasks() -> tuple[str, ...]:
    """The tasks that have a CPU study (``<task>-tiny.toml``) where the default study is
    looked up: ./studies, the checkout's studies/, the studies an installed wheel carries."""
    folders = [Path("studies"), checkout_studies(), packaged_studies()]
    return tuple(
        task
        for task in TASKS
        if any(f is not None and (f / f"{task}-tiny.toml").is_file() for f in folders)
    )


def check_default_study(task: str, gpus: float | None) -> None:
    """Without --study and without a GPU the default study is the task's CPU one, which only
    some tasks have: refuse the others in one line saying so, before anything starts (the
    task's own study, studies/<task>.toml, is sized for a GPU)."""
    if task not in TASKS or gpus:
        return  # an unknown task is refused by the search; with --gpus the GPU study is used
    have = cpu_study_tasks()
    if task in have or cuda_available():
        return
    raise FieldError(
        "--task",
        f"{task} has no CPU study (studies/{task}-tiny.toml) and this machine has no GPU; "
        f"the tasks with a CPU study: {', '.join(have) or 'none'}. Pass --study FILE, or run "
        f"on a machine with a GPU (studies/{task}.toml)",
    )


def cuda_available() -> bool:
    from trainers.runtime.device import cuda_device_count  # torch

    return cuda_device_count() > 0


def default_study_path(
    task: str, gpu: bool, echo: Callable[[str], None] | None = None, copy: bool = False
) -> Path:
    """studies/<task>-tiny.toml without a GPU (the embedded default), studies/<task>.toml with
    one; looked up in ./studies first (a project of your own), then in the repository checkout
    autoprumux runs from (used in place, as it always was). An installed autoprumux carries its
    studies inside the package, where nothing may be written: with ``copy``, they are copied
    into ./studies (files already there are kept), said in one line, and used from there, so
    the study's database, artifacts, tables and report land in the current folder."""
    name = f"{task}.toml" if gpu else f"{task}-tiny.toml"
    local = Path("studies") / name
    if local.is_file():
        return local
    checkout, packaged = checkout_studies(), packaged_studies()
    if checkout is not None and (checkout / name).is_file():
        return checkout / name
    if packaged is not None and (packaged / name).is_file():
        if not copy:
            raise FieldError(
                "--study",
                f"no study given and {local} does not exist (autoprumux search copies the "
                "packaged studies there); pass --study FILE",
            )
        _copy_packaged_studies(packaged, local.parent, echo or (lambda line: None))
        return local
    others = [str(folder / name) for folder in (checkout, packaged) if folder is not None]
    missing = (
        f"neither {local} nor {' nor '.join(others)} exists" if others else f"{local} is missing"
    )
    raise FieldError("--study", f"no study given and {missing}; pass --study FILE")


def _copy_packaged_studies(packaged: Path, into: Path, echo: Callable[[str], None]) -> None:
    try:
        copied = copy_studies(packaged, into)
    except OSError as err:
        raise FieldError(
            "--study",
            f"cannot copy the packaged studies into {into.resolve()}: {err}; run from a folder "
            "you can write to, or pass --study FILE",
        ) from None
    echo(
        f"copied the packaged studies into {into.resolve()} ({len(copied)} files): the "
        "study's database, artifacts and tables are kept there"
    )
