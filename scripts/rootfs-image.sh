#!/usr/bin/env bash
# Builds a Debian root filesystem with debootstrap once, caches its tarball by (suite, arch, packages) outside the
# checkout, and imports it into podman under the given name. This is how the tests get base images without a
# registry: the Dockerfiles keep the names a Docker user pulls, and the tests tag these local builds with them.
# Usage: scripts/rootfs-image.sh IMAGE_NAME [ARCH] [PACKAGE,PACKAGE,...]
#   ARCH: amd64 (default), arm64 or armhf (foreign arches need qemu-user-static; see scripts/binfmt.sh)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
name="$1"; arch="${2:-amd64}"; include="${3:-}"
suite="${DEBIAN_SUITE:-bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache="${LEARNING_TANGLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/learning-tangle}/rootfs"
key=$(printf '%s|%s|%s|v1' "$suite" "$arch" "$include" | sha256sum | cut -c1-12)
tarball="$cache/$suite-$arch-$key.tar"
. "$here/podman-env.sh"

case "$arch" in
  amd64) platform_arch=amd64; variant="" ;;
  arm64) platform_arch=arm64; variant="" ;;
  armhf) platform_arch=arm; variant=v7 ;;
  *) echo "unknown arch '$arch': use amd64, arm64 or armhf" >&2; exit 2 ;;
esac

if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
  mkdir -p "$cache"
  dir=$(mktemp -d "$cache/build.XXXXXX")
  trap 'rm -rf "$dir"' EXIT
  args=(--variant=minbase --arch="$arch")
  [ -n "$include" ] && args+=(--include="$include")
  echo "debootstrap $suite $arch ${include:+($include)}: a few minutes once, cached in $tarball" >&2
  ok=""
  for attempt in 1 2 3; do  # the mirror sometimes answers "Couldn't download packages"; a retry works
    rm -rf "${dir:?}"/*
    if debootstrap "${args[@]}" "$suite" "$dir" "$mirror" >"$dir.log" 2>&1; then ok=1; break; fi
    echo "debootstrap attempt $attempt failed: $(tail -n 1 "$dir.log")" >&2
  done
  [ -n "$ok" ] || { echo "debootstrap failed 3 times, see $dir.log" >&2; exit 1; }
  rm -f "$dir.log"
  # a smaller image: no apt lists, docs or caches
  rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/usr/share/doc/* "$dir"/usr/share/man/*
  tar -C "$dir" --numeric-owner -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
fi

if ! podman image exists "$name" || [ "$(podman image inspect --format '{{index .Labels "rootfs-key"}}' "$name" 2>/dev/null)" != "$key" ]; then
  import=(--change "LABEL rootfs-key=$key" --change 'CMD ["/bin/bash"]')
  [ "$arch" != amd64 ] && import+=(--arch "$platform_arch")
  [ -n "$variant" ] && import+=(--variant "$variant")
  podman import "${import[@]}" "$tarball" "$name" >/dev/null
fi
echo "$name"
