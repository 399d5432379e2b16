#!/usr/bin/env bash
# The one prepared run for a lent GPU machine (docs/development.md, docs/measurements.md "On a GPU"): the GPU tests,
# BERT-base training examples/s per phase and precision, and the paper grid's throughput tables.
# Run from the project root with the machine's own python3 (it holds torch; nothing can be
# installed there, no hub): OUT=folder bash benchmarks/gpu_session.sh
# Each part has its own time limit, so one that hangs leaves the others their time.
set -u
OUT=${OUT:-/tmp/gpu-session}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
PY=${PYTHON:-python3}
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    $PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
} 2>&1 | tee "$OUT/machine.txt"
timeout "${PYTEST_LIMIT:-180}" $PY -m pytest -m gpu -p no:cacheprovider -q tests/trainers 2>&1 | tee "$OUT/pytest-gpu.log"
timeout "${TRAIN_LIMIT:-200}" $PY benchmarks/bench_gpu_engine.py --steps "${STEPS:-20}" \
    --json "$OUT/training-speed.json" 2>&1 | tee "$OUT/training-speed.log"
timeout "${TABLE_LIMIT:-200}" $PY benchmarks/bench_gpu_engine.py --skip-training \
    --tables "$OUT" --table-dtypes float32 bfloat16 2>&1 | tee "$OUT/tables.log"
