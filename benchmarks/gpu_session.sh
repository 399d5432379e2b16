#!/usr/bin/env bash
# The prepared run for a lent GPU machine (docs/development.md, docs/measurements.md "On a GPU").
# Run from the project root with the machine's own python3 (it holds torch; no hub, no
# registry): OUT=folder bash benchmarks/gpu_session.sh, as one device call of 600 s. Carried,
# ignored by git, prepared on this side:
#   .gpu/tokenizer  bert-base-uncased's WordPiece files (all-MiniLM-L6-v2's: the same vocabulary)
#   .whl            wheels the image lacks: optuna, sqlalchemy, alembic, colorlog, mako, plotly,
#                   datasets, dill, multiprocess (docs/development.md says how to fetch them)
# The steps, most wanted first (each with its own time limit, so one that hangs leaves the
# others their time):
#   pytest      the GPU tests (no host waits in a step, graphs per bucket, bf16/fp16 served)
#   compile     BERT-base's shape on real SST-2 lengths, bf16, eager against compiled
#               (examples/s, MFU, compile time, graphs)
#   tables      the paper grid's throughput table (CUDA graphs; each (N, s) in fp32, bf16 and
#               fp16 in one round-robin run, with batch-1 latency)
#   share       four N = 1 trials sharing the GPU against one alone
#   checkpoints checkpoint overhead over 2,000 steps
#   smoke       a search of the local executor, two trials a GPU
# A step runs only while its limit fits in what is left of BUDGET_S (560 s: the call's 600 less
# the set-up), so the call ends on time; a step that succeeded leaves a marker in .gpu-done
# (ignored by git: kept on the machine between calls), and the same command run again on the
# still-warm machine runs only the steps not yet done. STEPS="compile tables" runs a subset.
set -u
OUT=${OUT:-/tmp/gpu-session}
BUDGET_S=${BUDGET_S:-560}
STEPS=${STEPS:-pytest compile tables share checkpoints smoke}
DONE=.gpu-done
mkdir -p "$OUT" "$DONE"
export PYTHONPATH=$PWD:$PWD/benchmarks PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
PY=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1 && [ ! -d /tmp/site ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl
fi
[ -d /tmp/site ] && export PYTHONPATH=$PYTHONPATH:/tmp/site
MODEL=/tmp/autoprumux-gpu/bert-base
STUDY=benchmarks/gpu_smoke.toml
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    $PY -c "import torch, transformers, pyarrow; print('torch', torch.__version__,
        'transformers', transformers.__version__, 'pyarrow', pyarrow.__version__)"
    $PY -c "import datasets, optuna; print('datasets', datasets.__version__, 'optuna', optuna.__version__)"
    [ -d "$MODEL" ] || $PY benchmarks/gpu_model.py --tokenizer .gpu/tokenizer --out "$MODEL"
} 2>&1 | tee -a "$OUT/machine.txt"

# step NAME LIMIT_S COMMAND...: COMMAND under `timeout LIMIT_S`, its output in $OUT/NAME.log,
# unless it is done already or its limit no longer fits in the budget
step() {
    local name=$1 limit=$2 left began rc
    shift 2
    case " $STEPS " in *" $name "*) ;; *) return ;; esac
    if [ -e "$DONE/$name" ]; then
        echo "== $name: done in an earlier call" | tee -a "$OUT/steps.txt"
        return
    fi
    left=$((BUDGET_S - SECONDS))
    if [ "$left" -lt "$limit" ]; then
        echo "== $name: not run, ${left} s left of the ${limit} s it may take" \
            | tee -a "$OUT/steps.txt"
        return
    fi
    began=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - began)) s" | tee -a "$OUT/steps.txt"
    [ "$rc" = 0 ] && touch "$DONE/$name"
}

step pytest 150 $PY -m pytest -m gpu -p no:cacheprovider -q tests
step compile 240 $PY benchmarks/bench_compile.py --study $STUDY --device cuda --num-layers 0 \
    --max-seq-length 128 --precision bf16 --rows 16384 --steps 300 --warmup 40 \
    --json "$OUT/compiled.json"
step tables 240 $PY benchmarks/bench_gpu_engine.py --skip-training --tables "$OUT"
step share 180 $PY benchmarks/bench_gpu_share.py --study $STUDY --trials 1 4 --steps 200 \
    --warmup 40 --json "$OUT/share.json"
step checkpoints 150 $PY benchmarks/bench_checkpoints.py --size base --device cuda \
    --precision bf16 --batch-rows 32 --steps 2000 --minutes 0.1 --rounds 1
# the search's JSON on stdout, its progress on stderr; then its checks
step smoke 200 bash -c "rm -rf /tmp/smoke && mkdir -p /tmp/smoke && cp $STUDY /tmp/smoke/smoke.toml \
    && $PY -m autoprumux search --study /tmp/smoke/smoke.toml --executor local --gpus 1 \
        --gpus-per-trial 0.5 --budget 0.5 --json >$OUT/smoke.json 2>$OUT/smoke-search.log \
    && $PY benchmarks/check_smoke.py /tmp/smoke/smoke.toml $OUT/smoke.json"
