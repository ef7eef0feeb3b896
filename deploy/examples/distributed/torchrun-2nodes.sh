#!/bin/sh
# torchrun over two nodes, recorded by roard as ONE run, torch-<JOB_ID>: run this script
# on both nodes (by hand, ssh, pdsh, a scheduler), with the same JOB_ID and MASTER and
# NODE_RANK 0 on the master node, 1 on the other:
#
#   JOB_ID=exp42 MASTER=node01 NODE_RANK=0 ./torchrun-2nodes.sh      # on node01
#   JOB_ID=exp42 MASTER=node01 NODE_RANK=1 ./torchrun-2nodes.sh      # on node02
#   roarctl show torch-exp42 --json                                  # afterwards, anywhere
#
# On each node, `roarctl tag --join` makes torchrun, its agent and every rank it spawns
# (and what they start) that node's part of the run; --hosts 2 tells the collector to
# wait for both nodes' parts before the run is shown finished. Each node's roarctl
# returns once its own part is finalized (outputs hashed) and exits with torchrun's status.
#
# With the c10d rendezvous torchrun assigns node ranks itself; NODE_RANK is passed on (a
# static rendezvous needs it) and labels each node's part.
#
# Edit: JOB_ID (unique per job: the same value serves as torchrun's rendezvous id),
# MASTER, NPROC (GPUs per node), the training command, ROARCTL when roarctl is not at
# /opt/roard/.venv/bin/roarctl. Needs roard on both nodes, streaming to one collector,
# each with its own host_id.
set -eu

: "${JOB_ID:?set JOB_ID, the same on both nodes and new for every job}"
: "${MASTER:?set MASTER, the host of node rank 0}"
: "${NODE_RANK:?set NODE_RANK: 0 on MASTER, 1 on the other node}"
NPROC=${NPROC:-8}
ROARCTL=${ROARCTL:-/opt/roard/.venv/bin/roarctl}

exec "$ROARCTL" tag --join "torch-${JOB_ID}" --hosts 2 --name train \
	--label "torch.job=${JOB_ID}" --label "torch.node_rank=${NODE_RANK}" \
	-- torchrun --nnodes 2 --node-rank "$NODE_RANK" --nproc-per-node "$NPROC" \
	--rdzv-id "$JOB_ID" --rdzv-backend c10d --rdzv-endpoint "${MASTER}:29400" \
	train.py --out /shared/ckpt/"torch-${JOB_ID}"
