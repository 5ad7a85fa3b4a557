#!/usr/bin/env bash
# Lets this machine run arm64 and armv7 containers and binaries under qemu-user (make images-multiarch-test,
# make images PLATFORMS=linux/arm64,linux/arm/v7 with podman): installs qemu-user-static and binfmt-support
# where missing, mounts binfmt_misc where it is not mounted, and enables qemu-aarch64 and qemu-arm. Needs root.
set -euo pipefail
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "scripts/binfmt.sh: needs root (or sudo)" >&2; exit 1; }
  sudo=sudo
fi
if ! command -v update-binfmts >/dev/null || [ ! -e /usr/bin/qemu-aarch64-static ]; then
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    qemu-user-static binfmt-support >/dev/null
fi
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  $sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
for interpreter in qemu-aarch64 qemu-arm; do
  $sudo update-binfmts --enable "$interpreter"
done
grep -H enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 /proc/sys/fs/binfmt_misc/qemu-arm
