#!/usr/bin/env bash
# Offline set-up into an existing Python that already has torch (air-gapped clusters).
#
#   bash tools/setup_offline.sh --wheelhouse DIR [--python PY] [--venv DIR] [--cuda-ops] [--force]
#
# DIR comes from tools/make_wheelhouse.sh (run where there is network, for this Python's
# version). Nothing is fetched: pip runs with --no-index --no-deps --isolated on the files in
# DIR. PY (default python3) is left untouched: the set-up creates a virtual environment
# (default <repo>/.venv-offline) layered over PY's site-packages, so
#   - torch, torchvision (and whatever else PY has) are imported from PY's own folders,
#     never reinstalled or upgraded;
#   - the wheelhouse's packages shadow PY's versions where they differ (e.g. numpy 1.26 of
#     the full profile over a numpy 2);
#   - mmcv 2.1.0 is compiled from the archive in DIR against PY's torch (CPU ops; with
#     --cuda-ops also the CUDA ones, which needs nvcc) and cached as tools/setup_env.sh
#     does (tools/mmcv_wheel.sh), then the plugin is installed (editable) and the set-up's
#     import check runs (tools/check_install.py).
# With numpy >= 2 underneath (the gpu profile), a one-line compatibility module restores
# numpy.bool8 (an alias numpy 2 removed, used by MMagic 1.2.0 at import) in that venv only.
# Use it as  <venv>/bin/python tools/train.py ...  (or source <venv>/bin/activate).
# MAX_JOBS (default: all cores) sets the compile's parallelism.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=python3
VENV=$ROOT/.venv-offline
WHEELHOUSE=
OPS=cpu
FORCE=0
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --wheelhouse) WHEELHOUSE=$2; shift 2 ;;
        --python) PYTHON=$2; shift 2 ;;
        --venv) VENV=$2; shift 2 ;;
        --cuda-ops) OPS=cuda; shift ;;
        --force) FORCE=1; shift ;;
        -h|--help) usage ;;
        *) echo "[offline] unknown argument $1" >&2; usage ;;
    esac
done
[[ -n $WHEELHOUSE ]] || usage
WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd)
STAMP=$VENV/.mmintrovae-ready
t_start=$(date +%s)
STEP=start
step() { STEP=$1; echo "[offline] $1  (+$(( $(date +%s) - t_start ))s)"; }
trap 'echo "[offline] FAILED at: $STEP (exit code $?). $VENV is not marked ready." >&2' ERR

# No network for pip, whatever the user's config says: --isolated ignores pip.conf and
# PIP_* variables (extra indexes, find-links), --no-index forbids indexes.
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export NO_ALBUMENTATIONS_UPDATE=1  # albumentations asks its index for a newer version at import
PIP_OFF=(--isolated install --no-index --no-deps --no-cache-dir --disable-pip-version-check)

step "checking $PYTHON and the wheelhouse $WHEELHOUSE"
command -v "$PYTHON" >/dev/null || { echo "[offline] $PYTHON not found: give --python /path/to/python" >&2; false; }
"$PYTHON" -c 'import torch' 2>/dev/null || { echo "[offline] $PYTHON cannot import torch: this set-up installs into an existing PyTorch" >&2; false; }
read -r PYVER TORCH_VERSION TORCH_DIR < <("$PYTHON" -c '
import os.path as osp, sys, torch
print(f"{sys.version_info[0]}.{sys.version_info[1]}", torch.__version__, osp.dirname(torch.__file__))')
[[ -f "$WHEELHOUSE/wheelhouse.json" ]] || { echo "[offline] $WHEELHOUSE has no wheelhouse.json: make it with tools/make_wheelhouse.sh" >&2; false; }
read -r WH_PY WH_PROFILE < <("$PYTHON" -c '
import json, sys; d = json.load(open(sys.argv[1])); print(d["python_version"], d["profile"])' "$WHEELHOUSE/wheelhouse.json")
[[ $WH_PY == "$PYVER" ]] || { echo "[offline] the wheelhouse is for Python $WH_PY, $PYTHON is $PYVER: make one with --python-version $PYVER" >&2; false; }
SDIST=$(ls "$WHEELHOUSE"/mmcv-2.1.0.tar.gz 2>/dev/null) || { echo "[offline] $WHEELHOUSE lacks mmcv-2.1.0.tar.gz" >&2; false; }
echo "[offline] Python $PYVER, torch $TORCH_VERSION from $TORCH_DIR; wheelhouse profile $WH_PROFILE"

step "virtual environment $VENV over $PYTHON's site-packages"
rm -f "$STAMP"
[[ $FORCE == 1 ]] && rm -rf "$VENV"
if [[ ! -x "$VENV/bin/python" ]]; then
    # Without ensurepip (Debian/Ubuntu Pythons lacking python3-venv), a venv without pip:
    # pip is then imported from PY's own site-packages through the .pth file below.
    ERR=$(mktemp)
    "$PYTHON" -m venv "$VENV" 2>"$ERR" || {
        echo "[offline] venv with pip failed ($(tail -n1 "$ERR")): making one without pip"
        rm -rf "$VENV"; "$PYTHON" -m venv --without-pip "$VENV"; }
    rm -f "$ERR"
fi
PY=$VENV/bin/python
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# site.addsitedir appends PY's folders after the venv's own (which therefore win) and
# processes their .pth files, as PY itself would.
"$PYTHON" -c '
import site, sys
dirs = [d for d in site.getsitepackages() + [site.getusersitepackages()] if d]
print("import site; " + "; ".join(f"site.addsitedir({d!r})" for d in dirs))' > "$SITE/_mmintrovae_base_site.pth"
"$PY" -c "import torch, sys; sys.exit(0 if torch.__version__ == '$TORCH_VERSION' else 1)" || {
    echo "[offline] the venv does not see $PYTHON's torch" >&2; false; }
"$PY" -m pip --version >/dev/null || { echo "[offline] no pip in the venv nor in $PYTHON" >&2; false; }

step "packages from the wheelhouse (pip --no-index --no-deps)"
"$PY" -m pip "${PIP_OFF[@]}" --quiet "$WHEELHOUSE"/*.whl
NUMPY_MAJOR=$("$PY" -c 'import numpy; print(numpy.__version__.split(".")[0])')
if [[ $NUMPY_MAJOR -ge 2 ]]; then
    echo "[offline] numpy $("$PY" -c 'import numpy; print(numpy.__version__)') underneath: adding the numpy.bool8 alias for MMagic 1.2.0 (this venv only)"
    cat > "$SITE/_mmintrovae_numpy2_compat.py" <<'EOF'
"""numpy 2 removed ``numpy.bool8``; MMagic 1.2.0 reads it at import (mmagic.utils.trans_utils).
Written by tools/setup_offline.sh into this venv only; the alias is numpy's own ``bool_``."""
import numpy

if not hasattr(numpy, 'bool8'):
    numpy.bool8 = numpy.bool_
EOF
    echo "import _mmintrovae_numpy2_compat" > "$SITE/_mmintrovae_numpy2_compat.pth"
fi

step "mmcv 2.1.0 with compiled $OPS ops, built against torch $TORCH_VERSION"
# A wheel the wheelhouse carries for exactly this torch/Python/flavour is used if its ops
# import here (e.g. an older glibc could refuse it); else the archive is compiled.
WHEEL=$(PATH="$VENV/bin:$PATH" MMCV_PREBUILT="$WHEELHOUSE/mmcv-prebuilt" \
    bash "$ROOT/tools/mmcv_wheel.sh" "$PY" "$SDIST" "$OPS" | tail -n1)
"$PY" -m pip "${PIP_OFF[@]}" --quiet --force-reinstall "$WHEEL"
if [[ $WHEEL == "$WHEELHOUSE"/mmcv-prebuilt/* ]] && ! "$PY" -c 'import mmcv.ops' 2>"$VENV/mmcv-prebuilt-error.txt"; then
    echo "[offline] the prebuilt mmcv does not import here ($(tail -n1 "$VENV/mmcv-prebuilt-error.txt")): compiling it"
    WHEEL=$(PATH="$VENV/bin:$PATH" MMCV_PREBUILT= bash "$ROOT/tools/mmcv_wheel.sh" "$PY" "$SDIST" "$OPS" | tail -n1)
    "$PY" -m pip "${PIP_OFF[@]}" --quiet --force-reinstall "$WHEEL"
fi

step "mmintrovae itself (editable)"
# PEP 660 (--use-pep517): an old pip (23.x, as venvs of Python 3.12.1 get) would otherwise
# run setup.py develop, which calls pip again with build isolation, i.e. an index
"$PY" -m pip "${PIP_OFF[@]}" --quiet --no-build-isolation --use-pep517 -e "$ROOT"

step "import check"
"$PY" "$ROOT/tools/check_install.py" --json "$VENV/mmintrovae-install.json"
"$PY" -c "import torch, sys; sys.exit(0 if torch.__file__.startswith('$TORCH_DIR') and torch.__version__ == '$TORCH_VERSION' else 1)" || {
    echo "[offline] torch is no longer $PYTHON's own torch $TORCH_VERSION" >&2; false; }
echo "$WH_PROFILE $TORCH_VERSION" > "$STAMP"
echo "[offline] ready in $(( $(date +%s) - t_start ))s: $VENV (torch $TORCH_VERSION untouched in $TORCH_DIR)"
