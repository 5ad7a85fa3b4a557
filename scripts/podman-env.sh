#!/usr/bin/env bash
# Source this (`. scripts/podman-env.sh`) before calling podman or buildah in tests and make targets.
# Our machines run containers without a Docker engine: podman with the runc runtime (crun fails on hybrid
# cgroups) and default ulimits below the sandbox's hard limits (it lacks CAP_SYS_RESOURCE). The file lives in
# the cache, outside the checkout, and changes nothing for other podman users on the machine.
_lt_cache="${LEARNING_TANGLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/learning-tangle}"
mkdir -p "$_lt_cache/podman"
_lt_nofile=$(ulimit -Hn); [ "$_lt_nofile" = unlimited ] && _lt_nofile=65536
[ "$_lt_nofile" -gt 16384 ] && _lt_nofile=16384
_lt_nproc=4096  # higher nproc values are refused here even below the hard limit
cat > "$_lt_cache/podman/containers.conf.new" <<CONF
[containers]
default_ulimits = ["nofile=${_lt_nofile}:${_lt_nofile}", "nproc=${_lt_nproc}:${_lt_nproc}"]

[engine]
runtime = "runc"
events_logger = "file"
cgroup_manager = "cgroupfs"
CONF
mv "$_lt_cache/podman/containers.conf.new" "$_lt_cache/podman/containers.conf"
export CONTAINERS_CONF="$_lt_cache/podman/containers.conf"
unset _lt_cache _lt_nofile _lt_nproc
