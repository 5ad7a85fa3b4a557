#!/bin/sh
# Learning Tangle: applies the 2020 prototype's IPFS variables to kubo on every start.
#
# The official ipfs/kubo image runs every /container-init.d/*.sh before `ipfs daemon` (as the ipfs user,
# with IPFS_PATH set), on every start; its own IPFS_PROFILE applies on the first start only. Mount this
# file there (mode 0755). Start kubo with `daemon --migrate=true --enable-gc`: Datastore.StorageMax and
# Datastore.GCPeriod act only with --enable-gc, which the image's default command lacks.
#
# Every value is validated before kubo is touched: a bad one is one line naming the variable, exit 2.
# What it sets equals `tangle peer --print-kubo-config` (peer/config.py, PeerSettings.kubo_config);
# tests/integration/test_kubo_init.py keeps the two the same.
#
#   CONNECTION_PRUNING_LOW           Swarm.ConnMgr.LowWater    whole number, default 40
#   CONNECTION_PRUNING_HIGH          Swarm.ConnMgr.HighWater   whole number >= 1 and >= LOW, default 70
#   CONNECTION_PRUNING_GRACE_PERIOD  Swarm.ConnMgr.GracePeriod seconds, default 60
#   IPFS_DATASTORE_STORAGEMAX        Datastore.StorageMax      size like 10GB or 512MiB, default 10GB
#   IPFS_DATASTORE_GCPERIOD          Datastore.GCPeriod        Go duration like 1h or 90s, default 1h
#   IPFS_REPROVIDER_INTERVAL         Provide.DHT.Interval      Go duration, default 22h (kubo >= 0.38 refuses
#                                                              to start with any Reprovider.* key set)
#   IPFS_API_LISTEN                  Addresses.API             default /ip4/127.0.0.1/tcp/5001: the RPC is an
#                                                              admin API, reachable only inside the pod
#   IPFS_GATEWAY_LISTEN              Addresses.Gateway         default /ip4/127.0.0.1/tcp/8080
#   (always)                         Reprovider                {} (clears what an old repository may hold)
#   (always)                         Pubsub.Enabled            true: announcements travel over PubSub
set -eu

name=050-learning-tangle.sh
bad=0
newline='
'
tab=$(printf '\t')

refuse() {
  printf '%s: %s\n' "$name" "$1" >&2
  bad=1
}

# check VARIABLE VALUE ERE MESSAGE: the whole value (one line) must match the extended regular expression
check() {
  case "$2" in
    *"$newline"*) refuse "$1: $4 (got a value with a line break)"; return 1 ;;
  esac
  if printf '%s\n' "$2" | LC_ALL=C grep -Eqx -e "$3"; then
    return 0
  fi
  refuse "$1: $4 (got '$2')"
  return 1
}

# strip blanks (spaces and tabs): sizes may be written "10 GB"; numbers and durations have none inside
squeeze() {
  printf '%s' "$1" | tr -d ' \t'
}

# a whole number without leading zeros (so sh arithmetic never reads it as octal)
number() {
  n=$(squeeze "$1" | sed 's/^0*//')
  printf '%s' "${n:-0}"
}

blank="[ ${tab}]*"
whole="${blank}[0-9]{1,7}${blank}"
size="${blank}[0-9]+(\\.[0-9]+)?${blank}([KMGT]i?)?B${blank}"
duration="${blank}([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+${blank}"
listen='/ip[46]/[0-9A-Fa-f.:]+/tcp/[0-9]{1,5}'

low=${CONNECTION_PRUNING_LOW:-40}
high=${CONNECTION_PRUNING_HIGH:-70}
grace=${CONNECTION_PRUNING_GRACE_PERIOD:-60}
storage_max=${IPFS_DATASTORE_STORAGEMAX:-10GB}
gc_period=${IPFS_DATASTORE_GCPERIOD:-1h}
provide_interval=${IPFS_REPROVIDER_INTERVAL:-22h}
api=${IPFS_API_LISTEN:-/ip4/127.0.0.1/tcp/5001}
gateway=${IPFS_GATEWAY_LISTEN:-/ip4/127.0.0.1/tcp/8080}

numbers_ok=1
check CONNECTION_PRUNING_LOW "$low" "$whole" "a whole number of connections (0-9999999) is needed" || numbers_ok=0
check CONNECTION_PRUNING_HIGH "$high" "$whole" "a whole number of connections (1-9999999) is needed" || numbers_ok=0
check CONNECTION_PRUNING_GRACE_PERIOD "$grace" "$whole" "a whole number of seconds (0-9999999) is needed" || true
check IPFS_DATASTORE_STORAGEMAX "$storage_max" "$size" "a size like 10GB or 512MiB is needed" || true
check IPFS_DATASTORE_GCPERIOD "$gc_period" "$duration" "a duration like 1h, 90s or 1h30m is needed" || true
check IPFS_REPROVIDER_INTERVAL "$provide_interval" "$duration" "a duration like 22h or 1h30m is needed" || true
check IPFS_API_LISTEN "$api" "$listen" "a multiaddr like /ip4/127.0.0.1/tcp/5001 is needed" || true
check IPFS_GATEWAY_LISTEN "$gateway" "$listen" "a multiaddr like /ip4/127.0.0.1/tcp/8080 is needed" || true
if [ "$numbers_ok" = 1 ]; then
  low=$(number "$low")
  high=$(number "$high")
  if [ "$high" -lt 1 ]; then
    refuse "CONNECTION_PRUNING_HIGH: must be at least 1 (got '$high')"
  elif [ "$low" -gt "$high" ]; then
    refuse "CONNECTION_PRUNING_LOW: must not exceed CONNECTION_PRUNING_HIGH ($low > $high)"
  fi
fi
if [ "$bad" != 0 ]; then
  exit 2
fi

grace=$(number "$grace")
storage_max=$(squeeze "$storage_max")
gc_period=$(squeeze "$gc_period")
provide_interval=$(squeeze "$provide_interval")

# the same order and JSON as `tangle peer --print-kubo-config`
ipfs config --json Swarm.ConnMgr.LowWater "$low"
ipfs config --json Swarm.ConnMgr.HighWater "$high"
ipfs config --json Swarm.ConnMgr.GracePeriod "\"${grace}s\""
ipfs config --json Datastore.StorageMax "\"$storage_max\""
ipfs config --json Datastore.GCPeriod "\"$gc_period\""
ipfs config --json Provide.DHT.Interval "\"$provide_interval\""
ipfs config --json Reprovider '{}'
ipfs config --json Pubsub.Enabled true
ipfs config --json Addresses.API "\"$api\""
ipfs config --json Addresses.Gateway "\"$gateway\""
printf '%s: kubo configured (ConnMgr %s/%s/%ss, StorageMax %s, GCPeriod %s, Provide.DHT.Interval %s, API %s)\n' \
  "$name" "$low" "$high" "$grace" "$storage_max" "$gc_period" "$provide_interval" "$api"
