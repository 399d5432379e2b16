"""The GPU smoke search's checks (benchmarks/gpu_session.sh): every training it recorded ran on
CUDA, and trials ran side by side (two a GPU: their spans overlap).

    python3 benchmarks/check_smoke.py STUDY.toml SEARCH.json

Reads the study's Optuna storage (the SQLite file beside the study file) as the dashboard
would; prints each trial's device, MFU, peak memory and span, then PASS or FAIL lines. Exits 1
when a check fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna

from autoprumux.core.study import load_study


def main() -> int:
    study_file, answer = Path(sys.argv[1]), Path(sys.argv[2])
    study = load_study(study_file)
    document = json.loads(answer.read_text())
    print(
        "search:",
        document.get("stop_reason"),
        "| best:",
        (document.get("best") or {}).get("message"),
    )
    storage = study.storage_url
    trials = [
        trial
        for name in optuna.get_all_study_names(storage)
        for trial in optuna.load_study(study_name=name, storage=storage).trials
        if trial.state is optuna.trial.TrialState.COMPLETE
    ]
    for trial in trials:
        attrs = trial.user_attrs
        print(
            f"trial {trial.number} {trial.params}: device {attrs.get('device')}, "
            f"MFU {attrs.get('mfu')}, peak {attrs.get('peak_memory_gib')} GiB, "
            f"{trial.datetime_start} .. {trial.datetime_complete}"
        )
    checks = {
        "every complete trial trained on CUDA": bool(trials)
        and all(str(t.user_attrs.get("device", "")).startswith("cuda") for t in trials),
        "two trials ran at once": any(
            a.number < b.number
            and a.datetime_start is not None
            and b.datetime_start is not None
            and a.datetime_complete is not None
            and b.datetime_complete is not None
            and a.datetime_start < b.datetime_complete
            and b.datetime_start < a.datetime_complete
            for a in trials
            for b in trials
        ),
    }
    for name, passed in checks.items():
        print("PASS" if passed else "FAIL", name)
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
