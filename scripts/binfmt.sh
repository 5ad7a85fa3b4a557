#!/usr/bin/env bash
# Lets this machine run arm64 and armv7 binaries under qemu-user (containers, debootstrap --arch, podman build
# --platform): mounts binfmt_misc where it is not mounted and registers Debian's qemu-aarch64 and qemu-arm
# interpreters (qemu-user-static, binfmt-support) with the flags P (argv[0] kept), F (the interpreter is opened
# now, so containers need no qemu inside) and C (credentials from the binary, not the interpreter: without it a
# setuid program such as sudo runs unprivileged, and Ansible's `become` fails on the emulated Pi hosts with
# "sudo: effective uid is not 0"). Idempotent; needs root. Changes only the kernel's binfmt table (until
# reboot); run it once before the on-demand arm targets. Re-registering never leaves a moment without an
# interpreter (a running arm build keeps working): the new entry is added under a temporary name first.
set -euo pipefail
missing=()
command -v update-binfmts >/dev/null || missing+=(binfmt-support)
[ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
if [ ${#missing[@]} -gt 0 ]; then
  echo "binfmt: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e "$binfmt/register" ]; then
  mount -t binfmt_misc binfmt_misc "$binfmt"
fi
field() { sed -n "s/^$2 //p" "/usr/share/binfmts/$1"; }
register() {  # NAME FORMAT-FILE: one entry with flags POCF from Debian's format file
  printf ':%s:M:%s:%s:%s:%s:POCF' "$1" "$(field "$2" offset)" "$(field "$2" magic)" "$(field "$2" mask)" \
    "$(field "$2" interpreter)" >"$binfmt/register"
}
for interpreter in qemu-aarch64 qemu-arm; do
  entry="$binfmt/$interpreter"
  if [ -e "$entry" ] && grep -qx enabled "$entry" && grep -q '^flags: .*C' "$entry"; then
    continue
  fi
  register "$interpreter-lt" "$interpreter"
  [ -e "$entry" ] && echo -1 >"$entry"
  register "$interpreter" "$interpreter"
  echo -1 >"$binfmt/$interpreter-lt"
done
echo "binfmt: arm64 and arm (v7) binaries run under qemu-user (flags $(sed -n 's/^flags: //p' "$binfmt/qemu-arm"))" >&2
