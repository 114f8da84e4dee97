#!/usr/bin/env bash
# Starts a local keelson-store cluster (default 3 members) on 127.0.0.1 and prints how
# to reach it with etcdctl. Data lives under ${KEELSON_DATA:-/tmp/keelson-store}.
# Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
members=${1:-3}
if ! command -v etcdctl >/dev/null; then
  echo "installing etcdctl (Debian's etcd-client)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-client
fi
base=${KEELSON_DATA:-/tmp/keelson-store}
cargo build --release -p keelson-store --bin keelson-store
bin=target/release/keelson-store
mkdir -p "$base"
cluster=""
for i in $(seq 1 "$members"); do
  cluster+="${cluster:+,}m$i=http://127.0.0.1:$((2380 + 10 * (i - 1)))"
done
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
endpoints=""
for i in $(seq 1 "$members"); do
  c=$((2379 + 10 * (i - 1))); p=$((2380 + 10 * (i - 1)))
  endpoints+="${endpoints:+,}127.0.0.1:$c"
  "$bin" --name "m$i" --data-dir "$base/m$i" \
    --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
    --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
    --initial-cluster "$cluster" --initial-cluster-token keelson-local \
    >"$base/m$i.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 1 100); do
  if ETCDCTL_API=3 etcdctl --endpoints="$endpoints" endpoint health >/dev/null 2>&1; then break; fi
  sleep 0.2
done
echo "keelson-store: $members members up (logs in $base/m*.log)."
echo "  export ETCDCTL_API=3 ETCDCTL_ENDPOINTS=$endpoints"
echo "  etcdctl member list -w table; etcdctl put foo bar; etcdctl get foo"
echo "Ctrl-C stops the cluster."
wait
