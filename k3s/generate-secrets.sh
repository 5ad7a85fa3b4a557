#!/usr/bin/env bash
# Generates the secrets of the k3s stack at deploy time. Nothing secret is ever committed or printed.
#
# Usage: k3s/generate-secrets.sh [--force] DIR
#
# Writes these files into DIR (created with mode 0700; every file mode 0600), one value each, no trailing newline:
#
#   bootstrap-peer-id        the bootstrap kubo node's libp2p peer id (12D3KooW..., public: peers dial it)
#   bootstrap-private-key    its Ed25519 private key as kubo's config holds it (Identity.PrivKey, base64 protobuf)
#   grafana-admin-password   Grafana's admin password (32 random URL-safe characters)
#   swarm.key                a libp2p private-network key (/key/swarm/psk/1.0.0/, base16); only the
#                            private-swarm component (k3s/components/private-swarm) uses it
#
# Files that exist are kept (re-running keeps the bootstrap identity and the password), after a check of
# their format; --force replaces them all. Prints only the names of the files it wrote or kept.
# The stack reads them through kustomize's secretGenerator in k3s/secrets/kustomization.yaml, so for the
# overlays as committed DIR is k3s/secrets (git ignores everything there but the kustomization). Tools that keep
# the values elsewhere (the Ansible role keeps them in Vault) write the same four files there before rendering.
#
# Needs bash, openssl (Ed25519 keys) and python3 (encodings; standard library only). Exit status 2 on bad usage,
# 1 on a malformed existing file or a failed tool, with one line naming the file or tool.
set -euo pipefail

usage() {
  echo "usage: $0 [--force] DIR" >&2
  exit 2
}

force=false
dir=""
for arg in "$@"; do
  case "$arg" in
    --force) force=true ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    -*) usage ;;
    *) [ -z "$dir" ] || usage; dir="$arg" ;;
  esac
done
[ -n "$dir" ] || usage

for tool in openssl python3; do
  command -v "$tool" >/dev/null || { echo "generate-secrets: $tool is missing (apt-get install $tool)" >&2; exit 1; }
done

umask 077
mkdir -p "$dir"
chmod 700 "$dir"

# Validates one existing file's format; the value itself never reaches the terminal.
valid() {
  local name="$1" file="$dir/$1"
  case "$name" in
    bootstrap-peer-id) grep -Eqx '12D3KooW[1-9A-HJ-NP-Za-km-z]{44}' "$file" ;;
    bootstrap-private-key) grep -Eqx 'CAESQ[A-Za-z0-9+/]{86}=' "$file" ;;
    grafana-admin-password) grep -Eqx '[A-Za-z0-9_-]{32}' "$file" ;;
    swarm.key) [ "$(sed -n 1p "$file")" = /key/swarm/psk/1.0.0/ ] && [ "$(sed -n 2p "$file")" = /base16/ ] &&
      sed -n 3p "$file" | grep -Eqx '[0-9a-f]{64}' ;;
  esac
}

names=(bootstrap-peer-id bootstrap-private-key grafana-admin-password swarm.key)
if ! $force; then
  for name in "${names[@]}"; do
    if [ -e "$dir/$name" ] && ! valid "$name"; then
      echo "generate-secrets: $dir/$name is malformed (remove it or pass --force)" >&2
      exit 1
    fi
  done
  # the peer id is derived from the private key: the two are kept or made together
  if [ -e "$dir/bootstrap-peer-id" ] && [ ! -e "$dir/bootstrap-private-key" ] ||
    { [ ! -e "$dir/bootstrap-peer-id" ] && [ -e "$dir/bootstrap-private-key" ]; }; then
    echo "generate-secrets: $dir holds only one of bootstrap-peer-id and bootstrap-private-key (remove it or pass --force)" >&2
    exit 1
  fi
fi

# Writes stdin to DIR/NAME atomically with mode 0600.
store() {
  local tmp
  tmp=$(mktemp "$dir/.$1.XXXXXX")
  cat >"$tmp"
  chmod 600 "$tmp"
  mv -f "$tmp" "$dir/$1"
  echo "wrote $dir/$1"
}

keep_or_make() {
  if ! $force && [ -e "$dir/$1" ]; then
    chmod 600 "$dir/$1"
    echo "kept $dir/$1"
    return 1
  fi
}

if keep_or_make bootstrap-peer-id; then
  # Ed25519 from openssl; libp2p's encodings (protobuf key, identity multihash, base58btc) in python
  der=$(mktemp "$dir/.key.XXXXXX")
  trap 'rm -f "$der"' EXIT
  openssl genpkey -algorithm ed25519 -outform DER -out "$der" 2>/dev/null ||
    { echo "generate-secrets: openssl cannot make an Ed25519 key (needs OpenSSL >= 1.1.1)" >&2; exit 1; }
  pub=$(openssl pkey -inform DER -in "$der" -pubout -outform DER | od -An -v -tx1 | tr -d ' \n')
  DER="$der" PUB="$pub" OUT="$dir" python3 - <<'EOF'
import base64, os

seed = open(os.environ["DER"], "rb").read()[-32:]  # PKCS#8 Ed25519: the 32-byte seed closes the DER
public = bytes.fromhex(os.environ["PUB"])[-32:]  # SubjectPublicKeyInfo: the 32-byte key closes the DER
# libp2p crypto.pb: KeyType Ed25519 = 1; a private key's data is seed + public key
private_pb = b"\x08\x01\x12\x40" + seed + public
public_pb = b"\x08\x01\x12\x20" + public
multihash = b"\x00" + bytes([len(public_pb)]) + public_pb  # identity multihash (keys up to 42 bytes)
alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
number, peer_id = int.from_bytes(multihash, "big"), ""
while number:
    number, digit = divmod(number, 58)
    peer_id = alphabet[digit] + peer_id
peer_id = "1" * (len(multihash) - len(multihash.lstrip(b"\0"))) + peer_id
for name, value in (("bootstrap-private-key", base64.b64encode(private_pb).decode()), ("bootstrap-peer-id", peer_id)):
    path = os.path.join(os.environ["OUT"], name)
    descriptor = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(value)
    os.replace(path + ".new", path)
EOF
  rm -f "$der"
  echo "wrote $dir/bootstrap-private-key"
  echo "wrote $dir/bootstrap-peer-id"
else
  echo "kept $dir/bootstrap-private-key"
fi

if keep_or_make grafana-admin-password; then
  openssl rand -base64 48 | tr '+/' '-_' | tr -d '=\n' | head -c 32 | store grafana-admin-password
fi

if keep_or_make swarm.key; then
  printf '/key/swarm/psk/1.0.0/\n/base16/\n%s\n' "$(openssl rand -hex 32)" | store swarm.key
fi
