#!/usr/bin/env bash
# The prepared run for a lent GPU machine (docs/development.md, docs/measurements.md "On a GPU").
# Run from the project root with the machine's own python3 (it holds torch; no hub, no
# registry): OUT=folder PART=1 bash benchmarks/gpu_session.sh, then PART=2 (each part fits one
# 10-minute device call; PART=all runs both). Carried, ignored by git, prepared on this side:
#   .gpu/tokenizer  bert-base-uncased's WordPiece files (all-MiniLM-L6-v2's: the same vocabulary)
#   .whl            wheels the image lacks: optuna, sqlalchemy, alembic, colorlog, mako, plotly,
#                   datasets, dill, multiprocess (docs/development.md says how to fetch them)
# Part 1: the GPU tests; BERT-base's shape on real SST-2 lengths, bf16, eager against compiled
#         (examples/s, MFU, compile time, graphs); four N = 1 trials sharing the GPU against one.
# Part 2: checkpoint overhead over 2,000 steps; the paper grid's throughput table (CUDA graphs;
#         each (N, s) in fp32, bf16 and fp16, the study's GPU precisions, in one round-robin
#         run, with batch-1 latency: the bf16 rows are issue 36's bf16 table beside fp32's,
#         and with fp16 issue 37's figures); a smoke search of the local executor, two trials
#         a GPU.
# Each step has its own time limit, so one that hangs leaves the others their time.
set -u
OUT=${OUT:-/tmp/gpu-session}
PART=${PART:-all}
mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/benchmarks PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
PY=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
MODEL=/tmp/autoprumux-gpu/bert-base
STUDY=benchmarks/gpu_smoke.toml
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    $PY -c "import torch, transformers, pyarrow; print('torch', torch.__version__,
        'transformers', transformers.__version__, 'pyarrow', pyarrow.__version__)"
    $PY -c "import datasets, optuna; print('datasets', datasets.__version__, 'optuna', optuna.__version__)"
    [ -d "$MODEL" ] || $PY benchmarks/gpu_model.py --tokenizer .gpu/tokenizer --out "$MODEL"
} 2>&1 | tee -a "$OUT/machine.txt"

if [ "$PART" = 1 ] || [ "$PART" = all ]; then
    timeout "${PYTEST_LIMIT:-120}" $PY -m pytest -m gpu -p no:cacheprovider -q tests 2>&1 \
        | tee "$OUT/pytest-gpu.log"
    timeout "${COMPILE_LIMIT:-240}" $PY benchmarks/bench_compile.py --study $STUDY \
        --device cuda --num-layers 0 --max-seq-length 128 --precision bf16 --rows 16384 \
        --steps 300 --warmup 40 --json "$OUT/compiled.json" 2>&1 | tee "$OUT/compiled.log"
    timeout "${SHARE_LIMIT:-180}" $PY benchmarks/bench_gpu_share.py --study $STUDY \
        --trials 1 4 --steps 200 --warmup 40 --json "$OUT/share.json" 2>&1 \
        | tee "$OUT/share.log"
fi
if [ "$PART" = 2 ] || [ "$PART" = all ]; then
    timeout "${CHECKPOINT_LIMIT:-120}" $PY benchmarks/bench_checkpoints.py --size base \
        --device cuda --precision bf16 --batch-rows 32 --steps 2000 --minutes 0.1 --rounds 1 \
        2>&1 | tee "$OUT/checkpoints.log"
    timeout "${TABLE_LIMIT:-240}" $PY benchmarks/bench_gpu_engine.py --skip-training \
        --tables "$OUT" 2>&1 | tee "$OUT/tables.log"
    rm -rf /tmp/smoke && mkdir -p /tmp/smoke && cp $STUDY /tmp/smoke/smoke.toml
    timeout "${SMOKE_LIMIT:-200}" $PY -m autoprumux search --study /tmp/smoke/smoke.toml \
        --executor local --gpus 1 --gpus-per-trial 0.5 --budget 0.5 --json \
        >"$OUT/smoke.json" 2>"$OUT/smoke.log"
    $PY benchmarks/check_smoke.py /tmp/smoke/smoke.toml "$OUT/smoke.json" 2>&1 \
        | tee "$OUT/smoke-check.txt"
fi
