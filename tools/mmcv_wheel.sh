#!/usr/bin/env bash
# Builds (or reuses) an mmcv 2.1.0 wheel with compiled ops for a given Python and its torch.
#
#   bash tools/mmcv_wheel.sh PYTHON SDIST [cpu|cuda]     # prints the wheel's path on its last line
#   bash tools/mmcv_wheel.sh --std TORCH_VERSION         # the C++ standard it would build with
#
# PYTHON must already import torch and have setuptools (< 81: mmcv's setup.py needs
# pkg_resources), wheel and ninja. SDIST is the mmcv-2.1.0.tar.gz source archive (no network
# is used). The wheel is cached in $MMINTROVAE_CACHE/wheels/<key> (default
# ~/.cache/mmintrovae), keyed by mmcv, torch and Python versions, the CPU/CUDA flavour and
# the machine, as tools/setup_env.sh does, so one build serves every later set-up.
# A prebuilt wheel for exactly that key can be dropped into the cache, or found in
# $MMCV_PREBUILT/<key>/ (a wheelhouse's mmcv-prebuilt folder), or named by MMCV_WHEEL=path,
# to skip the build. Builds leave out debug information (-g0): smaller wheels, faster builds.
#
# C++ standard: mmcv 2.1.0 asks for C++17, but torch >= 2.10's headers need C++20; the
# flag is raised only for those torch versions (older torch builds with mmcv's own C++17).
set -euo pipefail

cxx_std() {  # torch >= 2.10's headers need C++20; older torch builds with mmcv's C++17
    local major minor
    IFS=. read -r major minor _ <<< "${1%%+*}"
    if (( major > 2 || (major == 2 && minor >= 10) )); then echo c++20; else echo c++17; fi
}
if [[ "${1:-}" == "--std" ]]; then cxx_std "${2:?usage: mmcv_wheel.sh --std TORCH_VERSION}"; exit 0; fi

PY=${1:?usage: mmcv_wheel.sh PYTHON SDIST [cpu|cuda]}
SDIST=${2:?usage: mmcv_wheel.sh PYTHON SDIST [cpu|cuda]}
FLAVOUR_ARG=${3:-cpu}
CACHE=${MMINTROVAE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmintrovae}
MMCV_VERSION=2.1.0

log() { echo "[mmcv] $*" >&2; }

TORCH_VERSION=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
PY_TAG=$("$PY" -c "import sys; print(f'cp{sys.version_info.major}{sys.version_info.minor}')")
case $FLAVOUR_ARG in
    cpu) FLAVOUR=cpu ;;
    cuda) FLAVOUR=cuda$("$PY" -c "import torch; print(torch.version.cuda)")
          [[ $FLAVOUR != cudaNone ]] || { log "cuda ops asked for, but this torch has no CUDA"; exit 2; }
          command -v nvcc >/dev/null || { log "cuda ops asked for, but nvcc is not on PATH"; exit 2; } ;;
    *) log "flavour must be cpu or cuda, got '$FLAVOUR_ARG'"; exit 2 ;;
esac
KEY="mmcv-${MMCV_VERSION}-torch${TORCH_VERSION}-${PY_TAG}-${FLAVOUR}-$(uname -m)"
WHEEL_DIR="$CACHE/wheels/$KEY"

if [[ -n "${MMCV_WHEEL:-}" ]]; then
    [[ -f "$MMCV_WHEEL" ]] || { log "MMCV_WHEEL=$MMCV_WHEEL does not exist"; exit 2; }
    log "using the given wheel $MMCV_WHEEL (key $KEY is the caller's responsibility)"
    echo "$MMCV_WHEEL"
    exit 0
fi
if compgen -G "$WHEEL_DIR/mmcv-*.whl" >/dev/null; then
    log "reusing cached wheel for $KEY"
    ls "$WHEEL_DIR"/mmcv-*.whl | head -n1
    exit 0
fi
if [[ -n "${MMCV_PREBUILT:-}" ]] && compgen -G "$MMCV_PREBUILT/$KEY/mmcv-*.whl" >/dev/null; then
    log "using the prebuilt wheel for $KEY from $MMCV_PREBUILT"
    ls "$MMCV_PREBUILT/$KEY"/mmcv-*.whl | head -n1
    exit 0
fi

[[ -f "$SDIST" ]] || { log "source archive $SDIST not found"; exit 2; }
command -v "${CXX:-g++}" >/dev/null || { log "no C++ compiler (g++) found: install one"; exit 2; }
"$PY" -c "import pkg_resources, wheel" 2>/dev/null || {
    log "$PY lacks pkg_resources (setuptools < 81) or wheel, needed by mmcv's setup.py"; exit 2; }

STD=$(cxx_std "$TORCH_VERSION")
log "building $KEY from $(basename "$SDIST") with -std=$STD, MAX_JOBS=${MAX_JOBS:-$(nproc)}"
BUILD=$(mktemp -d "${TMPDIR:-/tmp}/mmcv-build.XXXXXX")
trap 'rm -rf "$BUILD"' EXIT
tar -xzf "$SDIST" -C "$BUILD"
SRC="$BUILD/mmcv-${MMCV_VERSION}"
if [[ $STD == c++20 ]]; then
    sed -i 's/-std=c++17/-std=c++20/g; s#/std:c++17#/std:c++20#g' "$SRC/setup.py"
fi
if [[ $FLAVOUR == cpu ]]; then export FORCE_CUDA=0; else export FORCE_CUDA=1; fi
t0=$(date +%s)
CFLAGS="${CFLAGS:-} -g0" MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    "$PY" -m pip --isolated wheel --disable-pip-version-check --no-index --no-build-isolation --no-deps \
    -w "$BUILD/dist" "$SRC" >&2
log "built in $(( $(date +%s) - t0 ))s"
# Publish atomically: a killed build never leaves a partial wheel in the cache.
mkdir -p "$CACHE/wheels"
STAGE=$(mktemp -d "$CACHE/wheels/.stage.XXXXXX")
cp "$BUILD"/dist/mmcv-*.whl "$STAGE/"
rm -rf "$WHEEL_DIR" && mv "$STAGE" "$WHEEL_DIR"
ls "$WHEEL_DIR"/mmcv-*.whl | head -n1
