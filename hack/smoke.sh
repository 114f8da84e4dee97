#!/usr/bin/env bash
# CI's smoke test of README command 1: from an empty state directory, bring the
# cluster up with hack/local-up.sh, run a busybox pod to completion and read its log,
# then stop it (SIGTERM, as Ctrl-C) and check that nothing is left behind: no
# processes, network namespaces, links, mounts or cgroups of ours.
# KEELSON_PROFILE (default dev: the test build) and KEELSON_PORT (default 16443) pass
# through to local-up.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(mktemp -d /tmp/keelson-smoke.XXXXXX)
export KEELSON_DATA=$data KEELSON_PROFILE=${KEELSON_PROFILE:-dev} KEELSON_PORT=${KEELSON_PORT:-16443}
log=$data.log
fail() {
  echo "smoke: $*" >&2
  for f in "$log" "$data"/*.log; do [ -f "$f" ] && { echo "--- $f" >&2; tail -40 "$f" >&2; }; done
  exit 1
}
bash hack/local-up.sh >"$log" 2>&1 &
up=$!
for _ in $(seq 1 1800); do
  grep -q '^  export KUBECONFIG=' "$log" && break
  kill -0 $up 2>/dev/null || fail "local-up.sh exited"
  sleep 0.5
done
kubeconfig=$(sed -n 's/^  export KUBECONFIG=//p' "$log")
[ -n "$kubeconfig" ] || fail "local-up.sh never printed export KUBECONFIG="
export KUBECONFIG=$kubeconfig
kubectl wait --for=create node/node-1 --timeout=120s >/dev/null || fail "no node"
kubectl wait --for=condition=Ready node/node-1 --timeout=120s >/dev/null || fail "node not Ready"
kubectl wait --for=create serviceaccount/default --timeout=60s >/dev/null || fail "no default service account"
kubectl run smoke --image=busybox --restart=Never -- sh -c 'echo smoke ok' >/dev/null
kubectl wait --for=jsonpath='{.status.phase}'=Succeeded pod/smoke --timeout=120s >/dev/null ||
  { kubectl describe pod smoke >&2; fail "the busybox pod did not complete"; }
out=$(kubectl logs smoke)
[ "$out" = "smoke ok" ] || fail "unexpected log: $out"
echo "smoke: a busybox pod ran and logged '$out'"
kill -TERM $up
wait $up || true
left=()
pgrep -f "$data" >/dev/null && left+=("processes: $(pgrep -af "$data" | head -5)")
ip netns list | grep -q '^keelson-node-1' && left+=("netns keelson-node-1")
ip link show keelson0 >/dev/null 2>&1 && left+=("bridge keelson0")
grep -q " $data" /proc/mounts && left+=("mounts: $(grep " $data" /proc/mounts | head -3)")
ls -d /sys/fs/cgroup/*/keelson-node-1 >/dev/null 2>&1 && left+=("cgroups /sys/fs/cgroup/*/keelson-node-1")
[ ${#left[@]} -eq 0 ] || fail "left behind: ${left[*]}"
rm -rf "$data" "$log"
echo "smoke: stopped, nothing left behind"
