#!/usr/bin/env bash
# STAND-IN builder (tests only): builds `docker.io/ipfs/kubo:v0.43.1` locally from the kubo binary that
# scripts/build-kubo.sh builds, because the official image cannot be pulled here. Rebuilt when the binary changes.
# Usage: tests/containers/standins/kubo-image.sh     (prints the image name)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
version="${KUBO_VERSION:-v0.43.1}"
image="docker.io/ipfs/kubo:$version"
binary=$("$root/scripts/build-kubo.sh" "$version")
"$root/scripts/standins/debian-base.sh" amd64 >/dev/null
# shellcheck source=scripts/podman-env.sh
. "$root/scripts/podman-env.sh"
key=$(cat "$binary" "$here/kubo/"* | sha256sum | cut -c1-16)
if podman image exists "$image" && [ "$(podman image inspect --format '{{index .Labels "standin-key"}}' "$image")" = "$key" ]; then
  echo "$image"; exit 0
fi
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$here/kubo/"* "$context/"
cp "$binary" "$context/ipfs"
chmod 0755 "$context/ipfs" "$context/start_ipfs" "$context/container_init_run"
podman build --pull=never --format docker --label "standin-key=$key" -t "$image" "$context" >&2
echo "$image"
