#!/bin/sh
# kubo /container-init.d script of the k3s stack, run on every start after the image's own init and after
# 050-learning-tangle.sh (the IPFS variables, RPC and gateway on loopback): the node joins the lab's swarm
# through the bootstrap node, and a private swarm is set up when a swarm key is mounted.
#
#   BOOTSTRAP_ADDR     multiaddr of the bootstrap node without /p2p (e.g. /dns4/bootstrap/tcp/4001); unset or
#                      empty on the bootstrap node itself, which then has no bootstrap peers at all
#   BOOTSTRAP_PEER_ID  its peer id (the Secret's public half)
#   SWARM_KEY_FILE     a mounted swarm.key: private swarm (AutoConf off, Routing.Type dht); unset: public
# The image runs this script, or sources it where the file mode is lost (podman kube play): no `exit` but on error.
set -eu

ipfs bootstrap rm --all >/dev/null
if [ -n "${BOOTSTRAP_ADDR:-}" ]; then
  [ -n "${BOOTSTRAP_PEER_ID:-}" ] || { echo "060-k3s: BOOTSTRAP_ADDR is set but BOOTSTRAP_PEER_ID is empty" >&2; exit 1; }
  ipfs bootstrap add "$BOOTSTRAP_ADDR/p2p/$BOOTSTRAP_PEER_ID" >/dev/null
  echo "060-k3s: bootstrap $BOOTSTRAP_ADDR/p2p/$BOOTSTRAP_PEER_ID"
fi

if [ -n "${SWARM_KEY_FILE:-}" ]; then
  [ -r "$SWARM_KEY_FILE" ] || { echo "060-k3s: SWARM_KEY_FILE $SWARM_KEY_FILE is not readable" >&2; exit 1; }
  rm -f "$IPFS_PATH/swarm.key"
  cp "$SWARM_KEY_FILE" "$IPFS_PATH/swarm.key"
  chmod 400 "$IPFS_PATH/swarm.key"
  # kubo >= 0.37 in a private swarm: no AutoConf (it would fetch public bootstrap peers), DHT routing, and none
  # of the public services AutoConf fills in ("auto"), AutoTLS, or websockets sharing the TCP listener
  ipfs config --json AutoConf.Enabled false
  ipfs config Routing.Type dht
  ipfs config --json DNS.Resolvers '{}'
  ipfs config --json Routing.DelegatedRouters '[]'
  ipfs config --json Ipns.DelegatedPublishers '[]'
  ipfs config --json AutoTLS.Enabled false
  ipfs config --json Swarm.Transports.Network.Websocket false
  echo "060-k3s: private swarm"
elif [ -e "$IPFS_PATH/swarm.key" ]; then
  # leaving a private swarm: back to the public network's defaults
  rm -f "$IPFS_PATH/swarm.key"
  for key in AutoConf.Enabled AutoTLS.Enabled Swarm.Transports.Network.Websocket; do
    ipfs config --json "$key" null
  done
  ipfs config --json DNS.Resolvers '{".": "auto"}'
  ipfs config --json Routing.DelegatedRouters '["auto"]'
  ipfs config --json Ipns.DelegatedPublishers '["auto"]'
  echo "060-k3s: swarm key removed, public swarm"
fi
