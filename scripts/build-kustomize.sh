#!/usr/bin/env bash
# Builds kustomize (what `kubectl apply -k` runs) from the Go module proxy once and caches the binary by version,
# outside the checkout, so the k3s tests render the stack exactly as a k3s of the targeted version does:
# kubectl 1.34 embeds kustomize v5.7.1. Prints the binary's path. Usage: scripts/build-kustomize.sh [VERSION]
set -euo pipefail

version="${1:-${KUSTOMIZE_VERSION:-v5.7.1}}"
cache="${LEARNING_TANGLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/learning-tangle}"
dest="$cache/kustomize/$version"
binary="$dest/kustomize"

if [ -x "$binary" ] && "$binary" version >/dev/null 2>&1; then
  echo "$binary"
  exit 0
fi
command -v go >/dev/null || {
  echo "kustomize $version is not cached at $binary and Go is missing: install Go >= 1.22 (apt-get install golang-go, or go.dev)" >&2
  exit 1
}
echo "building kustomize $version from the Go module proxy (about a minute, once; cached in $dest)" >&2
mkdir -p "$dest"
gopath="$cache/go"
GOPATH="$gopath" GOMODCACHE="$gopath/pkg/mod" GOBIN="$dest/.partial" CGO_ENABLED=0 \
  go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kustomize/kustomize/v5@$version"
mv "$dest/.partial/kustomize" "$binary"
rmdir "$dest/.partial"
"$binary" version >&2
echo "$binary"
