"""A search from Python, as in a notebook: ``autoprumux.search(...)`` returns what
``autoprumux search`` prints, and the answer as objects.

The trainings are replayed from the committed grid of the tiny SST-2 study
(studies/results/sst2-tiny-grid-grouped.json: every point trained once on 2 CPU cores), so this
runs in seconds, without training: the same search, proposals and answer as a real run of
studies/sst2-tiny.toml ranked by its committed throughput table. Everything it writes (the
study's SQLite storage, the report) goes to a temporary folder.

    python examples/python_api.py
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


def main() -> None:
    # progress lines go to the "autoprumux" logger: show them on stderr, as the CLI does
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="autoprumux-api-") as folder:
        # the study file in a folder of its own: its report lands beside it, not in the checkout
        study = Path(folder) / "studies" / STUDY.name
        study.parent.mkdir()
        shutil.copy(STUDY, study)
        result = autoprumux.search(
            study=study,
            budget=0.03,  # accuracy points below (1, 0) that may be lost
            trainer=f"replay:{REPLAY}",
            throughput=THROUGHPUT,
            storage=f"sqlite:///{Path(folder) / 'search.db'}",
        )
        print(result.text)  # what `autoprumux search` prints
        print()
        assert result.decision is not None and result.answer is not None
        top = [str(r.point) for r in result.decision.recommendations]
        print(f"stopped: {result.stop_reason.value}; top-{len(top)}: {', '.join(top)}")
        print(f"answer: {result.answer.point}")


if __name__ == "__main__":
    main()
