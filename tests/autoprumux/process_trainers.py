"""Fake trainers for the local executor's trial processes (test_trial_processes.py).

Spawned children unpickle a trainer by its module's name, and pytest imports test modules by
path (--import-mode=importlib), so the trainers live here: the tests put this folder on
sys.path, which a spawned child inherits, and import this module as ``process_trainers``.
"""

import json
import os
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path

from autoprumux.core.grid import GridPoint
from autoprumux.core.records import Training, TrialRecord

# accuracy of each point: falls with N and s; throughput rises
ACCURACY = {(1, 0.0): 0.90, (1, 0.5): 0.89, (2, 0.0): 0.88, (2, 0.5): 0.80}
THROUGHPUT = {(1, 0.0): 1000.0, (1, 0.5): 1500.0, (2, 0.0): 1900.0, (2, 0.5): 2600.0}


@dataclass(frozen=True, kw_only=True)
class PidTrainer:
    """Answers each point's fixed accuracy, its record's ``node`` saying where it trained:
    "pid=P device=D share=S". Each training writes ``folder``/N-s.json (pid, device, start and
    end seconds) when it starts and again when it ends; ``delay_s`` holds it in between. A point
    in ``raise_at`` raises; one in ``kill_at`` SIGKILLs its own process (a crash)."""

    folder: str
    delay_s: float = 0.0
    raise_at: tuple[tuple[int, float], ...] = ()
    kill_at: tuple[tuple[int, float], ...] = ()
    device: str = "unplaced"
    gpu_share: float = 1.0

    def on_device(self, device: str, gpu_share: float) -> "PidTrainer":
        return replace(self, device=device, gpu_share=gpu_share)

    def __call__(self, point: GridPoint, stop=None) -> Training:
        key = (point.n, point.sparsity)
        facts = {"pid": os.getpid(), "device": self.device, "start": time.time()}
        path = Path(self.folder) / f"{point.n}-{point.sparsity:g}.json"
        path.write_text(json.dumps(facts))
        if key in self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if key in self.raise_at:
            raise RuntimeError(f"boom at {point}\nsecond line")
        time.sleep(self.delay_s)
        path.write_text(json.dumps({**facts, "end": time.time()}))
        record = TrialRecord(
            task="sst2",
            n=point.n,
            sparsity=point.sparsity,
            accuracy=ACCURACY[key],
            throughput=THROUGHPUT[key],
            node=f"pid={os.getpid()} device={self.device} share={self.gpu_share:g}",
        )
        return Training(record)
