#!/bin/sh
#SBATCH --job-name=train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --time=04:00:00
#
# sbatch slurm-batch.sh: a two-node training job recorded by roard as ONE run,
# slurm-<jobid>, with one part per node. Each node's roard (all streaming to the same
# collector, each with its own host_id) records its own task; the collector merges them:
#
#   roarctl show slurm-<jobid> --json      # "hosts", "parts", every node's processes
#
# Edit: the #SBATCH lines, the training command (python train.py ...), ROARCTL when
# roarctl is not at /opt/roard/.venv/bin/roarctl on the compute nodes. Needs roard
# running on every node. Do not also tag the job's cgroup from a Slurm prolog
# (../slurm/prolog.sh): the job's processes would already be in that run.
set -eu

ROARCTL=${ROARCTL:-/opt/roard/.venv/bin/roarctl}
# Unique per job. Job ids restart on another cluster (or a reset slurmctld) that shares
# the collector: then add the cluster, e.g. slurm-${SLURM_CLUSTER_NAME}-${SLURM_JOB_ID}.
RUN_ID=slurm-${SLURM_JOB_ID}

# One task per node, each wrapped in `roarctl tag --join`: the task's process tree (python
# and everything it starts) is this node's part of RUN_ID. --hosts tells the collector to
# expect a part from every node, so the run is not shown finished when the first node is
# done. roarctl forwards SIGTERM (scancel, time limit) to python, returns once this node's
# part is finalized (its outputs hashed) and exits with python's status.
srun --ntasks-per-node=1 \
	"$ROARCTL" tag --join "$RUN_ID" --hosts "$SLURM_JOB_NUM_NODES" --name train \
	--label "slurm.job=${SLURM_JOB_ID}" --label "slurm.user=${SLURM_JOB_USER:-$(id -un)}" \
	-- python train.py --out /shared/ckpt/"$RUN_ID"

# Alternative, without roarctl in the job: the variable, in the tasks' environment only.
# Every program a task execs with ROARD_RUN=NAME@RUN_ID starts a part of RUN_ID on its
# node (here: python on each node). No --hosts: the collector cannot know how many nodes
# to expect, and srun returns as soon as python exits, without waiting for the outputs to
# be hashed (roard finishes that in the background). Prefer --export to `export
# ROARD_RUN=...` in this script: exported here, srun itself, and every later command this
# script runs (cp, date, ...), would each add a part of its own on this node.
#
# srun --ntasks-per-node=1 --export="ALL,ROARD_RUN=train@${RUN_ID}" \
# 	python train.py --out /shared/ckpt/"$RUN_ID"
