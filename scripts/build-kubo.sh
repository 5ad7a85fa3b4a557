#!/usr/bin/env bash
# Builds kubo (the production IPFS node) from the Go module proxy once and caches the binary by version,
# outside the checkout, so tests, the lab and the image stand-ins run the real thing.
# Prints the binary's path. Usage: scripts/build-kubo.sh [VERSION]
set -euo pipefail

version="${1:-${KUBO_VERSION:-v0.43.1}}"
cache="${LEARNING_TANGLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/learning-tangle}"
dest="$cache/kubo/$version"
binary="$dest/ipfs"

if [ -x "$binary" ] && "$binary" version >/dev/null 2>&1; then
  echo "$binary"
  exit 0
fi
command -v go >/dev/null || {
  echo "kubo $version is not cached at $binary and Go is missing: install Go >= 1.25 (apt-get install golang-go, or go.dev)" >&2
  exit 1
}
echo "building kubo $version from the Go module proxy (a few minutes of CPU, once; cached in $dest)" >&2
mkdir -p "$dest"
gopath="$cache/go"
export GOPATH="$gopath" GOMODCACHE="$gopath/pkg/mod" GOFLAGS="-mod=mod" CGO_ENABLED=0
# kubo's go.mod has exclude directives, so `go install pkg@version` refuses; build it as the main module instead.
moddir=$(go mod download -json "github.com/ipfs/kubo@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
cp -r "$moddir/." "$tmp/"
chmod -R u+w "$tmp"
# kubo v0.43.1 replaces go-libp2p with a fork commit that the module proxy does not serve. The fork only raised
# quic-go to v0.62.0 and webtransport-go to v0.13.0, which go-libp2p v0.50.0, a release, requires too.
(cd "$tmp" && go mod edit -dropreplace=github.com/libp2p/go-libp2p -require=github.com/libp2p/go-libp2p@v0.50.0)
(cd "$tmp" && go build -trimpath -ldflags "-s -w" -o "$dest/ipfs.partial" ./cmd/ipfs)
mv "$dest/ipfs.partial" "$binary"
"$binary" version >&2
echo "$binary"
