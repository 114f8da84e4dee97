#!/usr/bin/env bash
# README command 1: a single-node Keelson control plane on this machine.
# Starts kube-apiserver with its embedded store on https://127.0.0.1:6443, writes an
# admin kubeconfig, and prints how to use it. Ctrl-C stops it; state lives under
# ${KEELSON_DATA:-/tmp/keelson}.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${KEELSON_DATA:-/tmp/keelson}
port=${KEELSON_PORT:-6443}
mkdir -p "$base"
# KEELSON_PROFILE=dev uses a debug build (faster to build, slower to run).
profile=${KEELSON_PROFILE:-release}
cargo build --profile "$profile" -p keelson-apiserver --bin kube-apiserver
bindir=target/$([ "$profile" = dev ] && echo debug || echo "$profile")
if [ ! -s "$base/tokens.csv" ]; then
  token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  umask 077
  echo "$token,kubernetes-admin,kubernetes-admin,\"system:masters\"" >"$base/tokens.csv"
fi
token=$(cut -d, -f1 "$base/tokens.csv" | head -1)
"$bindir/kube-apiserver" \
  --data-dir "$base/data" --cert-dir "$base/pki" \
  --token-auth-file "$base/tokens.csv" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
  >"$base/apiserver.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' INT TERM EXIT
for _ in $(seq 1 150); do
  [ -s "$base/pki/apiserver.crt" ] && curl -fsk "https://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { cat "$base/apiserver.log"; exit 1; }
  sleep 0.2
done
ca=$(base64 -w0 <"$base/pki/apiserver.crt")
cat >"$base/admin.conf" <<CONF
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: $ca
    server: https://127.0.0.1:$port
  name: keelson
contexts:
- context:
    cluster: keelson
    user: kubernetes-admin
  name: kubernetes-admin@keelson
current-context: kubernetes-admin@keelson
users:
- name: kubernetes-admin
  user:
    token: $token
CONF
chmod 600 "$base/admin.conf"
echo "Keelson control plane is up on https://127.0.0.1:$port (log: $base/apiserver.log)."
echo "  export KUBECONFIG=$base/admin.conf"
echo "  kubectl get ns; kubectl create deployment web --image=nginx; kubectl get all"
echo "Ctrl-C stops it."
wait $pid
