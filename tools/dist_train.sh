#!/usr/bin/env bash
# Usage: bash tools/dist_train.sh CONFIG NUM_PROCESSES [train.py args]
#
# Distributed training with torchrun, as OpenMMLab ships it.
# NUM_PROCESSES is per node. Without GPUs the processes run on the CPU with the gloo backend
# (tools/train.py switches automatically).
#
# Environment variables (multi-node: run the script once on each node, same values but NODE_RANK):
#   NNODES       number of nodes                                  (default 1)
#   NODE_RANK    this node's index, 0 .. NNODES-1                 (default 0)
#   MASTER_ADDR  address of node 0, reachable from every node     (default 127.0.0.1)
#   PORT         free TCP port on node 0 for the rendezvous       (default 29500)
#   PYTHON       the interpreter                                  (default python)
# -h, --help prints this text; too few arguments print it and exit with status 2.
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
if [ $# -lt 2 ]; then usage >&2; exit 2; fi
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

PYTHONPATH="$(dirname "$0")/..":${PYTHONPATH:-} \
$PYTHON -m torch.distributed.run \
    --nnodes=$NNODES \
    --node_rank=$NODE_RANK \
    --master_addr=$MASTER_ADDR \
    --nproc_per_node=$GPUS \
    --master_port=$PORT \
    "$(dirname "$0")/train.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
