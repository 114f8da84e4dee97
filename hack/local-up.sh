#!/usr/bin/env bash
# README command 1: a single-node Keelson control plane on this machine.
# Starts kube-apiserver with its embedded store on https://127.0.0.1:6443 and
# kube-controller-manager (secure port 10257) against it, writes an admin kubeconfig,
# and prints how to use it. Ctrl-C stops both; state lives under
# ${KEELSON_DATA:-/tmp/keelson}.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${KEELSON_DATA:-/tmp/keelson}
port=${KEELSON_PORT:-6443}
mkdir -p "$base"
# KEELSON_PROFILE=dev uses a debug build (faster to build, slower to run).
profile=${KEELSON_PROFILE:-release}
cargo build --profile "$profile" -p keelson-apiserver --bin kube-apiserver \
  -p keelson-controller-manager --bin kube-controller-manager
bindir=target/$([ "$profile" = dev ] && echo debug || echo "$profile")
if [ ! -s "$base/tokens.csv" ]; then
  token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  umask 077
  echo "$token,kubernetes-admin,kubernetes-admin,\"system:masters\"" >"$base/tokens.csv"
fi
if ! grep -q ',system:kube-controller-manager,' "$base/tokens.csv"; then
  # kube-controller-manager's own identity, as kubeadm's controller-manager.conf.
  echo "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'),system:kube-controller-manager,system:kube-controller-manager" >>"$base/tokens.csv"
fi
token=$(cut -d, -f1 "$base/tokens.csv" | head -1)
kcm_token=$(grep ',system:kube-controller-manager,' "$base/tokens.csv" | cut -d, -f1)
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
kubeconfig() { # user token
  cat <<CONF
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
    user: $1
  name: $1@keelson
current-context: $1@keelson
users:
- name: $1
  user:
    token: $2
CONF
}
umask 077
kubeconfig kubernetes-admin "$token" >"$base/admin.conf"
kubeconfig system:kube-controller-manager "$kcm_token" >"$base/controller-manager.conf"
"$bindir/kube-controller-manager" \
  --kubeconfig "$base/controller-manager.conf" \
  --bind-address 127.0.0.1 --secure-port "${KEELSON_KCM_PORT:-10257}" \
  >"$base/controller-manager.log" 2>&1 &
kcm=$!
trap 'kill $pid $kcm 2>/dev/null; wait $pid $kcm 2>/dev/null' INT TERM EXIT
chmod 600 "$base/admin.conf"
echo "Keelson control plane is up on https://127.0.0.1:$port (logs: $base/apiserver.log, $base/controller-manager.log)."
echo "  export KUBECONFIG=$base/admin.conf"
echo "  kubectl get ns; kubectl create deployment web --image=nginx; kubectl get all"
echo "Ctrl-C stops it."
wait $pid
