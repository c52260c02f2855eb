#!/usr/bin/env bash
# Multi-process training through torchrun and MMEngine's 'pytorch' launcher (MMagic's form).
#   bash tools/dist_train.sh CONFIG NUM_PROCS [train.py options...]
# NUM_PROCS: processes on this node (one per GPU; on a machine without GPUs they run
# on the CPU with gloo). Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on
# every node. PYTHON picks the interpreter (default: the repository's .venv, else python).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: [NNODES=1 NODE_RANK=0 MASTER_ADDR=127.0.0.1 PORT=29500] $0 CONFIG NUM_PROCS [train.py options...]" >&2
    exit 2
fi
CONFIG=$1
NPROCS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python )}

PYTHONPATH="$ROOT:${PYTHONPATH:-}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROCS" --master_port="$PORT" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
