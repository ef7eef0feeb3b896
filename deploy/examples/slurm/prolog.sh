#!/bin/sh
# Slurm Prolog (slurm.conf: Prolog=/etc/slurm/prolog.d/roard.sh, PrologFlags=Contain):
# tag the job's cgroup as a roard run named slurm-<jobid>, before any job process exists.
# With PrologFlags=Contain, slurmd creates the job cgroup (and its extern step) at
# allocation, so it is there when this runs; every task the job starts later lands in it
# and joins the run. The run ends when the epilog untags it or slurmd removes the cgroup.
#
# A prolog that fails drains the node: recording lineage must never cost the job, so
# every failure is logged and this exits 0.

ROARCTL=${ROARCTL:-/opt/roard/.venv/bin/roarctl}

if [ -d /sys/fs/cgroup/system.slice/slurmstepd.scope ]; then
	# cgroup v2 (CgroupPlugin=cgroup/v2): one tree; the scope is named
	# <nodename>_slurmstepd.scope when several slurmd run on one host.
	cgroup=/sys/fs/cgroup/system.slice/slurmstepd.scope/job_${SLURM_JOB_ID}
else
	# cgroup v1 (CgroupPlugin=cgroup/v1): one tree per controller; the freezer hierarchy
	# is the one proctrack/cgroup puts every job process in.
	cgroup=/sys/fs/cgroup/freezer/slurm/uid_${SLURM_JOB_UID}/job_${SLURM_JOB_ID}
fi

"$ROARCTL" tag --cgroup "$cgroup" --name "slurm-${SLURM_JOB_ID}" \
	--label "slurm.job=${SLURM_JOB_ID}" --label "slurm.user=${SLURM_JOB_USER}" \
	>/dev/null 2>/tmp/roard-prolog.$$ ||
	logger -t roard-prolog "job ${SLURM_JOB_ID} not recorded: $(cat /tmp/roard-prolog.$$)"
rm -f /tmp/roard-prolog.$$
exit 0
