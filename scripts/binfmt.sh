#!/usr/bin/env bash
# Lets this machine run arm64 and armv7 binaries under qemu-user (containers, debootstrap --arch, podman build
# --platform): mounts binfmt_misc where it is not mounted and enables Debian's qemu-aarch64 and qemu-arm
# registrations (qemu-user-static, binfmt-support; "F" flag, so containers need no qemu inside). Idempotent;
# needs root. Changes only the kernel's binfmt table (until reboot); run it once before the on-demand arm targets.
set -euo pipefail
missing=()
command -v update-binfmts >/dev/null || missing+=(binfmt-support)
[ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
if [ ${#missing[@]} -gt 0 ]; then
  echo "binfmt: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
for interpreter in qemu-aarch64 qemu-arm; do
  if ! grep -qx enabled "/proc/sys/fs/binfmt_misc/$interpreter" 2>/dev/null; then
    update-binfmts --enable "$interpreter"
  fi
done
echo "binfmt: arm64 and arm (v7) binaries run under qemu-user" >&2
