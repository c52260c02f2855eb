#!/usr/bin/env bash
# Multi-process evaluation through torchrun (MMagic's form); metrics gather over all ranks.
#   bash tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py options...]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node. PYTHON picks
# the interpreter (default: the repository's .venv, else python).
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: [NNODES=1 NODE_RANK=0 MASTER_ADDR=127.0.0.1 PORT=29500] $0 CONFIG CHECKPOINT NUM_PROCS [test.py options...]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROCS=$3
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
    "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${@:4}"
