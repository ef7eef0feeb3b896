#!/bin/sh
# Run on the node (as root) that runs the pod: tag every process of a Kubernetes pod, those
# running now and those its containers start or restart later, as one roard run named
# k8s-<namespace>-<pod>. The run ends when the pod is deleted (the kubelet removes its
# cgroup) or on `roarctl untag k8s-<namespace>-<pod>`.
#
#   tag-pod.sh NAMESPACE POD [--label K=V]...
set -eu

ns=$1
pod=$2
shift 2
ROARCTL=${ROARCTL:-/opt/roard/.venv/bin/roarctl}

# The pod's UID, from the container runtime (crictl talks to containerd or CRI-O).
sandbox=$(crictl pods --namespace "$ns" --name "$pod" --state ready -q | head -n 1)
[ -n "$sandbox" ] || { echo "tag-pod: no ready pod $ns/$pod on this node" >&2; exit 1; }
uid=$(crictl inspectp -o go-template --template '{{.status.metadata.uid}}' "$sandbox")

# The kubelet's pod cgroup, one directory per pod:
#   systemd driver: kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_>.slice
#                   (<uid_>: the UID with - as _; Guaranteed pods sit in kubepods.slice)
#   cgroupfs driver: kubepods/<qos>/pod<uid>
# under /sys/fs/cgroup on cgroup v2, and under each controller (e.g. /sys/fs/cgroup/pids)
# on cgroup v1.
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
	root=/sys/fs/cgroup
else
	root=/sys/fs/cgroup/pids
fi
underscored=$(echo "$uid" | tr - _)
cgroup=$(find "$root" -maxdepth 4 -type d \
	\( -name "kubepods*-pod${underscored}.slice" -o -name "pod${uid}" \) | head -n 1)
[ -n "$cgroup" ] || { echo "tag-pod: no cgroup for pod $ns/$pod (uid $uid) under $root" >&2; exit 1; }

exec "$ROARCTL" tag --cgroup "$cgroup" --name "k8s-${ns}-${pod}" \
	--label "k8s.namespace=$ns" --label "k8s.pod=$pod" --label "k8s.pod_uid=$uid" "$@"
