#!/usr/bin/env bash
# Distributed testing on a Slurm cluster, one srun task per process, as OpenMMLab ships it:
#   [GPUS=8] [GPUS_PER_NODE=8] bash tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [args]
# Each task runs tools/test.py --launcher slurm (see tools/slurm_train.sh). Without GPUs the tasks
# run on the CPU with the gloo backend.
#
# Environment variables: see tools/slurm_launch.sh (GPUS, GPUS_PER_NODE, CPUS_PER_TASK, GRES,
# SRUN_ARGS, MASTER_ADDR, MASTER_PORT, PYTHON).
exec bash "$(dirname "$0")/slurm_launch.sh" test "$1" "$2" "$3" "$4" --launcher=slurm "${@:5}"
