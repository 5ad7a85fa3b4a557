#!/usr/bin/env bash
# The system packages the tests drive for real: Chromium (browser tests), Prometheus and node-exporter
# (monitoring tests). Installs only what is missing; needs root (or sudo) on Debian. kubo, the IPFS node of the
# integration tests, is built by scripts/build-kubo.sh (make test runs it; it needs Go >= 1.25).
set -euo pipefail

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-node-exporter >/dev/null || [ -x /usr/bin/prometheus-node-exporter ] || missing+=(prometheus-node-exporter)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
# container images and the compose lab (tests/containers): podman with runc, buildah, debootstrap for the base
command -v podman >/dev/null || missing+=(podman)
command -v buildah >/dev/null || missing+=(buildah)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
# the k3s stack (tests/stack): podman (above) plays the pod templates, with netavark and aardvark-dns for its
# networks; openssl makes the generated secrets; kustomize itself is built from
# the Go module proxy by scripts/build-kustomize.sh
[ -x /usr/lib/podman/netavark ] || missing+=(netavark)
[ -x /usr/lib/podman/aardvark-dns ] || missing+=(aardvark-dns)
command -v openssl >/dev/null || missing+=(openssl)
# emulated lab hosts for the Ansible tests: podman containers from debootstrap root filesystems over ssh
command -v ssh >/dev/null || missing+=(openssh-client)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "installing test dependencies: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# --no-install-recommends keeps Prometheus from pulling in a service setup we do not use
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# the tests start their own Prometheus and node-exporter on free loopback ports; packaged services stay off
for service in prometheus prometheus-node-exporter; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
    $sudo systemctl disable --now "$service" >/dev/null 2>&1 || true
  fi
done
