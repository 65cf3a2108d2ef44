#!/usr/bin/env bash
# Usage: [GPUS=16] [GPUS_PER_NODE=8] bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [args]
#
# Distributed training on a Slurm cluster, one srun task per process, as OpenMMLab ships it.
# Each task runs tools/train.py --launcher slurm, which takes its rank, world size, local rank and
# master address from srun's SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID and SLURM_NODELIST.
# Without GPUs the tasks run on the CPU with the gloo backend.
#
# Environment variables: see tools/slurm_launch.sh (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, GRES,
# SRUN_ARGS, MASTER_ADDR, MASTER_PORT, PYTHON).
# -h, --help prints this text; too few arguments print it and exit with status 2.
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }
case "${1:-}" in -h|--help) usage; exit 0 ;; esac
if [ $# -lt 4 ]; then usage >&2; exit 2; fi
exec bash "$(dirname "$0")/slurm_launch.sh" train "$1" "$2" "$3" --work-dir="$4" --launcher=slurm "${@:5}"
