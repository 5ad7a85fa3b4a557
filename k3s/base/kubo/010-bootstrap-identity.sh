#!/bin/sh
# kubo /container-init.d script of the k3s stack, for the bootstrap node (BOOTSTRAP_IDENTITY_DIR set; a no-op
# elsewhere): its identity comes from the Secret generated at deploy time (k3s/generate-secrets.sh), so the peers
# can dial /dns4/bootstrap/tcp/4001/p2p/<peer id>. kubo refuses `ipfs config Identity.PrivKey`, so the two fields
# are written into the repository's config file, read from the Secret's files by awk (never on a command line);
# kubo checks at start that the key and the id match.
# The image runs this script, or sources it where the file mode is lost (podman kube play): no `exit` but on error.
set -eu
if [ -n "${BOOTSTRAP_IDENTITY_DIR:-}" ]; then
  for file in "$BOOTSTRAP_IDENTITY_DIR/peer-id" "$BOOTSTRAP_IDENTITY_DIR/private-key" "$IPFS_PATH/config"; do
    [ -r "$file" ] || { echo "010-bootstrap-identity: cannot read $file" >&2; exit 1; }
  done
  if [ "$(ipfs config Identity.PeerID)" != "$(cat "$BOOTSTRAP_IDENTITY_DIR/peer-id")" ]; then
    awk -v idfile="$BOOTSTRAP_IDENTITY_DIR/peer-id" -v keyfile="$BOOTSTRAP_IDENTITY_DIR/private-key" '
      BEGIN { getline id < idfile; getline key < keyfile }
      /^ *"PeerID": "[^"]*"/ { sub(/"PeerID": "[^"]*"/, "\"PeerID\": \"" id "\"") }
      /^ *"PrivKey": "[^"]*"/ { sub(/"PrivKey": "[^"]*"/, "\"PrivKey\": \"" key "\"") }
      { print }
    ' "$IPFS_PATH/config" >"$IPFS_PATH/config.identity"
    mv "$IPFS_PATH/config.identity" "$IPFS_PATH/config"
  fi
  echo "010-bootstrap-identity: $(ipfs config Identity.PeerID) from $BOOTSTRAP_IDENTITY_DIR"
fi
