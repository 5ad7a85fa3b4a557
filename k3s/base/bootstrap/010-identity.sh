#!/bin/sh
# kubo /container-init.d script of the bootstrap node only: its identity comes from the Secret generated at
# deploy time (k3s/generate-secrets.sh), so the peers can dial /dns4/bootstrap/tcp/4001/p2p/<peer id>.
# kubo refuses `ipfs config Identity.PrivKey`, so the two fields are written into the repo's config file
# (read from the Secret's files by awk, never passed on a command line); kubo checks at start that they match.
set -eu
dir="${BOOTSTRAP_IDENTITY_DIR:-/secrets/bootstrap}"
config="$IPFS_PATH/config"
for file in "$dir/peer-id" "$dir/private-key" "$config"; do
  [ -r "$file" ] || { echo "010-identity: cannot read $file" >&2; exit 1; }
done
if [ "$(ipfs config Identity.PeerID)" = "$(cat "$dir/peer-id")" ]; then
  exit 0
fi
awk -v idfile="$dir/peer-id" -v keyfile="$dir/private-key" '
  BEGIN { getline id < idfile; getline key < keyfile }
  /^  *"PeerID": "[^"]*"/ { sub(/"PeerID": "[^"]*"/, "\"PeerID\": \"" id "\"") }
  /^  *"PrivKey": "[^"]*"/ { sub(/"PrivKey": "[^"]*"/, "\"PrivKey\": \"" key "\"") }
  { print }
' "$config" >"$config.identity"
mv "$config.identity" "$config"
echo "010-identity: bootstrap identity $(ipfs config Identity.PeerID) from $dir"
