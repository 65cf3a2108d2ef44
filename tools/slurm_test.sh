#!/usr/bin/env bash
# Usage: [GPUS=8] [GPUS_PER_NODE=8] bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [args]
#
# Distributed testing on a Slurm cluster, one srun task per process, as OpenMMLab ships it.
# Each task runs tools/test.py --launcher slurm (see tools/slurm_train.sh). Without GPUs the tasks
# run on the CPU with the gloo backend.
#
# Environment variables: see tools/slurm_launch.sh (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, GRES,
# SRUN_ARGS, MASTER_ADDR, MASTER_PORT, PYTHON).
# -h, --help prints this text; too few arguments print it and exit with status 2.
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
if [ $# -lt 4 ]; then usage >&2; exit 2; fi
exec bash "$(dirname "$0")/slurm_launch.sh" test "$1" "$2" "$3" "$4" --launcher=slurm "${@:5}"
