#!/usr/bin/env bash
# Distributed training on a Slurm cluster, one srun task per process, as OpenMMLab ships it:
#   [GPUS=16] [GPUS_PER_NODE=8] bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [args]
# Each task runs tools/train.py --launcher slurm, which takes its rank, world size, local rank and
# master address from srun's SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID and SLURM_NODELIST.
# Without GPUs the tasks run on the CPU with the gloo backend.
#
# Environment variables: see tools/slurm_launch.sh (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, GRES,
# SRUN_ARGS, MASTER_ADDR, MASTER_PORT, PYTHON).
exec bash "$(dirname "$0")/slurm_launch.sh" train "$1" "$2" "$3" --work-dir="$4" --launcher=slurm "${@:5}"
