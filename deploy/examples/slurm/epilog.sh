#!/bin/sh
# Slurm Epilog (slurm.conf: Epilog=/etc/slurm/epilog.d/roard.sh): end the job's run and
# finalize it (outputs hashed as the job left them). When slurmd already removed the job
# cgroup, roard ended the run itself and this only prints how it ended. Never fails the node.

ROARCTL=${ROARCTL:-/opt/roard/.venv/bin/roarctl}

"$ROARCTL" untag "slurm-${SLURM_JOB_ID}" >/dev/null 2>/tmp/roard-epilog.$$ ||
	logger -t roard-epilog "job ${SLURM_JOB_ID}: $(cat /tmp/roard-epilog.$$)"
rm -f /tmp/roard-epilog.$$
exit 0
