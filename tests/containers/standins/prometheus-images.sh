#!/usr/bin/env bash
# STAND-IN builder (tests only): builds the images the compose lab names for Prometheus and node-exporter
# (docker/lab.py: PROMETHEUS_IMAGE, NODE_EXPORTER_IMAGE) from Debian's packages. Prints both names.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
"$root/scripts/standins/debian-base.sh" amd64 >/dev/null
# shellcheck source=scripts/podman-env.sh
. "$root/scripts/podman-env.sh"
read -r prometheus node_exporter < <(python3 "$root/docker/lab.py" images --monitoring)
for pair in "prometheus:$prometheus" "node-exporter:$node_exporter"; do
  target="${pair%%:*}"; image="${pair#*:}"
  podman image exists "$image" || podman build --pull=never --format docker --target "$target" -t "$image" \
    "$here/prometheus" >&2
  echo "$image"
done
