#!/usr/bin/env bash
# The system packages the tests drive for real: Chromium (browser tests), Prometheus and node-exporter
# (monitoring tests), Node.js and npm (the js-ipfs testnet). Installs only what is missing; needs root
# (or sudo) on Debian. The js-ipfs node itself is installed by the tests from ipfs-testnet/package-lock.json.
set -euo pipefail

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-node-exporter >/dev/null || [ -x /usr/bin/prometheus-node-exporter ] || missing+=(prometheus-node-exporter)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
# emulated lab hosts for the Ansible tests: podman containers from debootstrap root filesystems over ssh
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
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
