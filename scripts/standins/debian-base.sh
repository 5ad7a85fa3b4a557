#!/usr/bin/env bash
# STAND-IN for tests and offline builds: the Dockerfile's base image `debian:bookworm-20251229-slim` cannot be
# pulled here (no registry). This imports a debootstrap minbase bookworm (scripts/rootfs-image.sh, cached) under
# exactly that name, slimmed as the official slim variant is: the same dpkg path excludes (no docs, man pages or
# locales), apt's docker-clean hook, no package cache.
# Usage: scripts/standins/debian-base.sh [amd64|arm64|armhf]     (prints the image name)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
arch="${1:-amd64}"
base=$(sed -n 's/^FROM \([^ ]*debian:[^ ]*\) AS python$/\1/p' "$here/../docker/Dockerfile")
[ -n "$base" ] || { echo "docker/Dockerfile: no 'FROM ...debian:... AS python' line" >&2; exit 1; }
# shellcheck source=scripts/podman-env.sh
. "$here/podman-env.sh"
rootfs="localhost/lt-standin/debian-rootfs:bookworm-$arch"
"$here/rootfs-image.sh" "$rootfs" "$arch" >/dev/null
key="$(podman image inspect --format '{{index .Labels "rootfs-key"}}' "$rootfs")-slim1"
if podman image exists "$base" && [ "$(podman image inspect --format '{{index .Labels "standin-key"}}' "$base")" = "$key" ]; then
  echo "$base"; exit 0
fi
case "$arch" in
  amd64) platform=(--arch amd64) ;;
  arm64) platform=(--arch arm64) ;;
  armhf) platform=(--arch arm --variant v7) ;;
  *) echo "unknown arch '$arch': use amd64, arm64 or armhf" >&2; exit 2 ;;
esac
container="lt-standin-debian-$arch-$$"
trap 'podman rm -f "$container" >/dev/null 2>&1 || true' EXIT
# what debuerreotype's "slimify" and the docker-clean hook do to the official images
podman create --name "$container" --pull=never "$rootfs" /bin/sh -c '
set -e
cat > /etc/dpkg/dpkg.cfg.d/docker <<CFG
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
CFG
cat > /etc/apt/apt.conf.d/docker-clean <<CFG
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
CFG
echo "Acquire::Languages \"none\";" > /etc/apt/apt.conf.d/docker-no-languages
rm -rf /usr/share/locale/* /usr/share/info/* /usr/share/man/* /usr/share/groff/* /usr/share/lintian/overrides/*
find /usr/share/doc -mindepth 2 ! -name copyright -delete 2>/dev/null || true
rm -rf /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /var/lib/apt/lists/* /var/log/*
' >/dev/null
podman start --attach "$container" >/dev/null
podman export "$container" | podman import "${platform[@]}" \
  --change "LABEL standin-key=$key" --change 'CMD ["bash"]' - "$base" >/dev/null
echo "$base"
