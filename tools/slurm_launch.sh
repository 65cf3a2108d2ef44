#!/usr/bin/env bash
# Usage: bash tools/slurm_launch.sh {train|test} PARTITION JOB_NAME [tool arguments]
#
# The srun call shared by tools/slurm_train.sh and tools/slurm_test.sh: runs tools/$TOOL.py as one
# srun task per process, each with the given arguments (the wrappers add --launcher=slurm).
#
# Environment variables:
#   GPUS           total number of tasks (processes), one per GPU   (default 8)
#   GPUS_PER_NODE  tasks per node                                    (default 8)
#   CPUS_PER_TASK  CPU cores per task                                (default 5)
#   GRES           generic resources per node   (default gpu:$GPUS_PER_NODE; GRES= asks for none,
#                  as partitions without GPUs need)
#   SRUN_ARGS      extra srun options, e.g. "--quotatype=auto"       (default none)
#   MASTER_ADDR    address of the first node    (default: the job's first host, from scontrol)
#   MASTER_PORT    free TCP port there for the rendezvous            (default 29500)
#   PYTHON         the interpreter                                   (default python)
# -h, --help prints this text; too few arguments print it and exit with status 2.
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
if [ $# -lt 3 ] || { [ "$1" != train ] && [ "$1" != test ]; }; then usage >&2; exit 2; fi
set -x

TOOL=$1
PARTITION=$2
JOB_NAME=$3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
GRES=${GRES-gpu:$GPUS_PER_NODE}
SRUN_ARGS=${SRUN_ARGS:-""}
PYTHON=${PYTHON:-python}

# SRUN_ARGS is left unquoted on purpose: it holds several options.
PYTHONPATH="$(dirname "$0")/..":${PYTHONPATH:-} \
srun --partition="$PARTITION" \
    --job-name="$JOB_NAME" \
    ${GRES:+--gres="$GRES"} \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    $PYTHON -u "$(dirname "$0")/$TOOL.py" "${@:4}"
