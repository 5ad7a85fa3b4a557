#!/usr/bin/env bash
# `make images`: builds learning-tangle/peer and learning-tangle/visualizer (docker/Dockerfile) for each platform
# and writes one image archive per architecture, which `docker load` and `k3s ctr images import` accept:
#   dist/images/<arch>/learning-tangle-<name>-<version>.tar      (arch: amd64, arm64, armv7)
# With a Docker engine running: `docker buildx bake` (docker/docker-bake.hcl). Without one: podman, which also
# builds other architectures under qemu-user (binfmt_misc; see scripts/binfmt.sh).
#
# Environment (all optional):
#   PLATFORMS    comma-separated, default the machine's own (linux/amd64, linux/arm64, linux/arm/v7)
#   REGISTRY     image name prefix ending in "/", e.g. registry.lab:5000/ (default: none, i.e. docker.io names)
#   IMAGES       which images, default "peer visualizer"
#   ENGINE       docker or podman (default: docker when its engine answers, else podman)
#   OUT          archive folder, default dist/images
#   PEER_EXTRAS  optional dependency groups for the peer image (pyproject.toml extras), comma-separated; default
#                tflite (the TensorFlow Lite runtime for MODEL=tflite); PEER_EXTRAS= (empty) builds without it
#   BUILD_CA     a CA bundle pip must trust (TLS-intercepting proxy); default PIP_CERT or SSL_CERT_FILE
#   PODMAN_BUILD_EXTRA  podman only: more `podman build` options, e.g. --no-cache (benchmarks/images.py)
#   STANDIN_BASE=1  podman only: import the debootstrap stand-in for the Debian base image first and never pull
#                (tests and machines without a registry; scripts/standins/debian-base.sh)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
registry="${REGISTRY:-}"
if [ -n "$registry" ] && [ "${registry: -1}" != "/" ]; then registry="$registry/"; fi
images="${IMAGES:-peer visualizer}"
peer_extras="${PEER_EXTRAS-tflite}" # unset: the default; set and empty: no extras
out="${OUT:-dist/images}"
source_url=$(git config --get remote.origin.url 2>/dev/null || true)
revision=$(git rev-parse HEAD 2>/dev/null || true)

native() {
  case "$(uname -m)" in
    x86_64) echo linux/amd64 ;;
    aarch64) echo linux/arm64 ;;
    armv7l|armv8l) echo linux/arm/v7 ;;
    *) echo "unsupported machine $(uname -m)" >&2; exit 1 ;;
  esac
}
platforms="${PLATFORMS:-$(native)}"

arch_of() {  # platform -> archive folder name, debootstrap arch
  case "$1" in
    linux/amd64) echo "amd64 amd64" ;;
    linux/arm64|linux/arm64/v8) echo "arm64 arm64" ;;
    linux/arm/v7|linux/arm) echo "armv7 armhf" ;;
    *) echo "PLATFORMS: unsupported platform '$1' (use linux/amd64, linux/arm64, linux/arm/v7)" >&2; exit 2 ;;
  esac
}
for image in $images; do
  case "$image" in peer|visualizer) ;; *) echo "IMAGES: unknown image '$image' (peer, visualizer)" >&2; exit 2 ;; esac
done
read -r -a image_list <<<"$images"
IFS=, read -r -a platform_list <<<"$platforms"
for platform in "${platform_list[@]}"; do arch_of "$platform" >/dev/null; done

engine="${ENGINE:-}"
if [ -z "$engine" ]; then
  # the docker CLI alone is not enough: ask the engine
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker; else engine=podman; fi
fi

archive() { echo "$out/$1/learning-tangle-$2-$version.tar"; }

if [ "$engine" = docker ]; then
  for platform in "${platform_list[@]}"; do
    read -r arch _ < <(arch_of "$platform")
    mkdir -p "$out/$arch"
    sets=(--set "*.platform=$platform")
    for image in $images; do
      sets+=(--set "$image.output=type=docker,dest=$(archive "$arch" "$image")")
    done
    echo "docker buildx bake: $images for $platform" >&2
    ca="${BUILD_CA:-${PIP_CERT:-${SSL_CERT_FILE:-}}}"
    [ -n "$ca" ] && [ -s "$ca" ] && sets+=(--set "*.secrets=id=build-ca,src=$ca")
    REGISTRY="$registry" VERSION="$version" SOURCE="$source_url" REVISION="$revision" \
      PEER_EXTRAS="$peer_extras" docker buildx bake -f docker/docker-bake.hcl "${sets[@]}" "${image_list[@]}"
  done
  # load the native architecture's images, so `docker run` finds them
  for image in $images; do
    native_arch=$(arch_of "$(native)" | cut -d' ' -f1)
    [ -f "$(archive "$native_arch" "$image")" ] && docker load -i "$(archive "$native_arch" "$image")" >/dev/null
  done
  exit 0
fi

[ "$engine" = podman ] || { echo "ENGINE: use docker or podman (got '$engine')" >&2; exit 2; }
command -v podman >/dev/null || { echo "neither a Docker engine nor podman found: install one (apt-get install podman)" >&2; exit 1; }
# shellcheck source=scripts/podman-env.sh
. "$root/scripts/podman-env.sh"
# the native platform last, so that the plain tag ends on the image this machine runs
mapfile -t ordered < <(printf '%s\n' "${platform_list[@]}" | grep -vx "$(native)" || true)
printf '%s\n' "${platform_list[@]}" | grep -qx "$(native)" && ordered+=("$(native)")
# a TLS-intercepting proxy's CA (the host trusts it through PIP_CERT or SSL_CERT_FILE) reaches pip as a build
# secret, never as a layer (docker/pip-install.sh)
secret=()
ca="${BUILD_CA:-${PIP_CERT:-${SSL_CERT_FILE:-}}}"
[ -n "$ca" ] && [ -s "$ca" ] && secret=(--secret "id=build-ca,src=$ca")
read -r -a extra <<<"${PODMAN_BUILD_EXTRA:-}"
pull=(--pull=missing)
[ "${STANDIN_BASE:-}" = 1 ] && pull=(--pull=never)
for platform in "${ordered[@]}"; do
  read -r arch debarch < <(arch_of "$platform")
  from=()
  if [ "${STANDIN_BASE:-}" = 1 ]; then
    from=(--from "$("$root/scripts/standins/debian-base.sh" "$debarch")")
  fi
  mkdir -p "$out/$arch"
  for image in $images; do
    name="${registry}learning-tangle/$image:$version"
    # the plain tag is the native image's; another architecture's is NAME:VERSION-ARCH (never moves the plain one)
    tag="$name"
    [ "$platform" != "$(native)" ] && tag="$name-$arch"
    echo "podman build: $tag for $platform" >&2
    podman build "${pull[@]}" "${secret[@]}" "${extra[@]}" "${from[@]}" --format docker --platform "$platform" --target "$image" \
      --build-arg VERSION="$version" --build-arg SOURCE="$source_url" --build-arg REVISION="$revision" \
      --build-arg PEER_EXTRAS="$peer_extras" \
      -f docker/Dockerfile -t "$tag" .
    # archives carry the fully qualified name that Docker and containerd give `learning-tangle/...` references
    # (with a REGISTRY that is NAME itself, which then moves to this image while it is saved)
    qualified="$name"
    [ -z "$registry" ] && qualified="docker.io/$name"
    [ "$qualified" != "$tag" ] && podman tag "$tag" "$qualified"
    rm -f "$(archive "$arch" "$image")"
    podman save --format docker-archive -o "$(archive "$arch" "$image")" "$qualified" >/dev/null
    [ "$qualified" != "$tag" ] && podman untag "$qualified" "$qualified"
    archive "$arch" "$image"
  done
done
