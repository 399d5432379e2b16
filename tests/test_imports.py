import subprocess
import sys

HEAVY = ("torch", "ray", "optuna", "plotly", "pandas", "transformers", "datasets")
CORE = (
    "autoprumux",
    "autoprumux.grid",
    "autoprumux.records",
    "autoprumux.surface",
    "autoprumux.surrogate",
    "autoprumux.throughput",
    "autoprumux.budget",
    "autoprumux.recommender",
    "autoprumux.evaluation",
    "autoprumux.study",
    "autoprumux.outputs",
    "autoprumux.synthetic",
    "autoprumux.proposer",
    "autoprumux.costs",
    "autoprumux.early_stop",
    "autoprumux.report",
    "autoprumux.answer",
    "autoprumux.harness",
    "autoprumux.masking",
)


def test_decision_core_imports_no_heavy_library():
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
