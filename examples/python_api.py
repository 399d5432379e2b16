"""A search from Python, as in a notebook: ``autoprumux.search(...)`` returns what
``autoprumux search`` prints, and the answer as objects.

The trainings are replayed from the committed grid of the tiny SST-2 study
(studies/results/sst2-tiny-grid-grouped.json: every point trained once on 2 CPU cores), so this
runs in seconds, without training, and gives the answer a real run of studies/sst2-tiny.toml
ranked by its committed throughput table gives: (1, 0.7). The grid holds fp32 figures only, so
the study's int8 points stay unknown, and the replayed search replays more points than a real
run trains (16 of the 18).

Everything it writes (a copy of the study file, the study's SQLite storage, the HTML report of
about 5 MB) goes to FOLDER, else to a new folder in the system's temporary folder, and is kept:
the paths it prints (the report, the dashboard's storage, the study file) stay valid. Delete the
folder when done.

    python examples/python_api.py [FOLDER]
"""

import logging
import shutil
import sys
import tempfile
from pathlib import Path

import autoprumux

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "sst2-tiny.toml"
REPLAY = ROOT / "studies" / "results" / "sst2-tiny-grid-grouped.json"
THROUGHPUT = ROOT / "studies" / "throughput" / "sst2-tiny-cpu-float32.json"


def main(argv: list[str]) -> None:
    # progress lines go to the "autoprumux" logger: show them on stderr, as the CLI does
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    folder = Path(argv[0] if argv else tempfile.mkdtemp(prefix="autoprumux-api-")).resolve()
    # the study file in a folder of its own: its report lands beside it, not in the checkout
    study = folder / "studies" / STUDY.name
    study.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(STUDY, study)
    result = autoprumux.search(
        study=study,
        budget=0.03,  # accuracy points below (1, 0) that may be lost
        trainer=f"replay:{REPLAY}",
        throughput=THROUGHPUT,
        storage=f"sqlite:///{folder / 'search.db'}",  # a rerun in the same FOLDER answers from it
    )
    print(result.text)  # what `autoprumux search` prints
    print()
    print(f"kept in {folder}: the study file, its storage and the report")
    assert result.decision is not None and result.answer is not None
    top = [str(r.point) for r in result.decision.recommendations]
    print(f"stopped: {result.stop_reason.value}; top-{len(top)}: {', '.join(top)}")
    print(f"answer: {result.answer.point}")


if __name__ == "__main__":
    main(sys.argv[1:])
