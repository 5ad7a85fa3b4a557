#!/bin/sh
# Removes the iptables rules and chains k3s, kube-proxy, flannel and the CNI plugins created (as k3s-killall.sh
# does), leaving every other rule. Prints "changed" when it removed something.
set -eu
changed=""
for tool in iptables ip6tables; do
  command -v "$tool-save" >/dev/null 2>&1 || continue
  before=$("$tool-save" 2>/dev/null || true)
  after=$(printf '%s\n' "$before" | grep -v -E 'KUBE-|CNI-|cali-|cali:|flannel|FLANNEL' || true)
  if [ "$before" != "$after" ]; then
    printf '%s\n' "$after" | "$tool-restore"
    changed=1
  fi
done
[ -n "$changed" ] && echo changed
exit 0
