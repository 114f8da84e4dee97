#!/usr/bin/env bash
# README command 1: a Keelson cluster on this machine: a control plane and one node.
# Starts kube-apiserver with its embedded store on https://127.0.0.1:6443 (listening on
# every address, so the node reaches it on the node network),
# kube-controller-manager (secure port 10257) and kube-scheduler (10259) against it,
# as kubeadm would: one CA, client certificates for the admin (system:masters), the
# controller manager and the scheduler (system:kube-scheduler),
# Node,RBAC authorization, service account tokens signed with sa.key, and the
# controllers on their own service accounts. Then the node: the images in a local
# registry (hack/images.sh), a network namespace with its own containerd
# (hack/node.sh), and the kubelet in it as system:node:node-1. Writes an admin
# kubeconfig and prints how to use it. Ctrl-C stops them all and removes the node;
# state lives under ${KEELSON_DATA:-/tmp/keelson}.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${KEELSON_DATA:-/tmp/keelson}
port=${KEELSON_PORT:-6443}
mkdir -p "$base"
# KEELSON_PROFILE=dev uses a debug build (faster to build, slower to run).
profile=${KEELSON_PROFILE:-release}
# The whole workspace's binaries: the same build the tests make, so nothing is
# compiled twice with other features.
cargo build --profile "$profile" --workspace --bins
bindir=${CARGO_TARGET_DIR:-target}/$([ "$profile" = dev ] && echo debug || echo "$profile")
for tool in openssl curl; do
  command -v "$tool" >/dev/null || {
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "$tool"
  }
done
# The PKI, as kubeadm lays it out: one CA for serving and client certificates, the
# admin in system:masters, the controller manager as system:kube-controller-manager,
# and the service account signing key pair.
pki=$base/pki
mkdir -p "$pki"
umask 077
if [ ! -s "$pki/ca.crt" ]; then
  rm -f "$pki"/*.crt "$pki"/*.key
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=kubernetes" -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
fi
cert() { # name subject extendedKeyUsage [subjectAltName]
  [ -s "$pki/$1.crt" ] && return
  local ext="keyUsage=critical,digitalSignature\nextendedKeyUsage=$3"
  [ -n "${4:-}" ] && ext="$ext\nsubjectAltName=$4"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$2" \
    -keyout "$pki/$1.key" -out "$pki/$1.csr" 2>/dev/null
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 365 -out "$pki/$1.crt" -extfile <(printf "$ext") 2>/dev/null
  rm -f "$pki/$1.csr"
}
# The node network (hack/node.sh): the host is $net.0.1 there, node-1 is $net.0.11.
net=${KEELSON_NET:-10.99}
gw=$net.0.1
node=node-1
cert apiserver "/CN=kube-apiserver" serverAuth \
  "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.0.0.1,IP:$gw"
cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
cert "kubelet-$node" "/O=system:nodes/CN=system:node:$node" clientAuth
cert admin "/O=system:masters/CN=kubernetes-admin" clientAuth
cert controller-manager "/CN=system:kube-controller-manager" clientAuth
cert scheduler "/CN=system:kube-scheduler" clientAuth
if [ ! -s "$pki/sa.key" ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/sa.key"
  openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
fi
"$bindir/kube-apiserver" \
  --data-dir "$base/data" --cert-dir "$pki" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" --authorization-mode Node,RBAC \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
  --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP,ExternalIP,Hostname \
  --bind-address 0.0.0.0 --advertise-address "$gw" --secure-port "$port" \
  >"$base/apiserver.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' INT TERM EXIT
for _ in $(seq 1 150); do
  curl -fs --cacert "$pki/ca.crt" "https://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 $pid 2>/dev/null || { cat "$base/apiserver.log"; exit 1; }
  sleep 0.2
done
b64() { base64 -w0 <"$1"; }
kubeconfig() { # user certificate-name [server]
  cat <<CONF
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: $(b64 "$pki/ca.crt")
    server: ${3:-https://127.0.0.1:$port}
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
    client-certificate-data: $(b64 "$pki/$2.crt")
    client-key-data: $(b64 "$pki/$2.key")
CONF
}
kubeconfig kubernetes-admin admin >"$base/admin.conf"
kubeconfig system:kube-controller-manager controller-manager >"$base/controller-manager.conf"
"$bindir/kube-controller-manager" \
  --kubeconfig "$base/controller-manager.conf" --use-service-account-credentials \
  --authentication-kubeconfig "$base/controller-manager.conf" \
  --authorization-kubeconfig "$base/controller-manager.conf" --client-ca-file "$pki/ca.crt" \
  --root-ca-file "$pki/ca.crt" --service-account-private-key-file "$pki/sa.key" \
  --bind-address 127.0.0.1 --secure-port "${KEELSON_KCM_PORT:-10257}" \
  >"$base/controller-manager.log" 2>&1 &
kcm=$!
kubeconfig system:kube-scheduler scheduler >"$base/scheduler.conf"
"$bindir/kube-scheduler" \
  --kubeconfig "$base/scheduler.conf" \
  --authentication-kubeconfig "$base/scheduler.conf" --authorization-kubeconfig "$base/scheduler.conf" \
  --client-ca-file "$pki/ca.crt" \
  --bind-address 127.0.0.1 --secure-port "${KEELSON_SCHEDULER_PORT:-10259}" \
  >"$base/scheduler.log" 2>&1 &
sched=$!
trap 'kill $pid $kcm $sched 2>/dev/null; wait $pid $kcm $sched 2>/dev/null' INT TERM EXIT

# The node: the images in a local registry, a network namespace with its own
# containerd (hack/node.sh), and the kubelet in it.
export KEELSON_DATA=$base
bash hack/images.sh
bash hack/node.sh up "$node" 1
ndir=$base/nodes/$node
kubeconfig "system:node:$node" "kubelet-$node" "https://$gw:$port" >"$ndir/kubelet.conf"
cat >"$ndir/kubelet-config.yaml" <<CONF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  x509:
    clientCAFile: $pki/ca.crt
authorization:
  mode: Webhook
clusterDomain: cluster.local
cgroupRoot: /keelson-$node
podLogsDir: $ndir/logs
resolvConf: /etc/resolv.conf
staticPodPath: $ndir/manifests
containerRuntimeEndpoint: unix://$ndir/containerd/containerd.sock
CONF
mkdir -p "$ndir/manifests"
setsid nsenter --net="/run/netns/keelson-$node" "$bindir/kubelet" \
  --config "$ndir/kubelet-config.yaml" --kubeconfig "$ndir/kubelet.conf" \
  --root-dir "$ndir/kubelet" --cert-dir "$ndir/kubelet/pki" \
  --hostname-override "$node" --node-ip "$net.0.11" \
  >"$base/kubelet.log" 2>&1 &
kubelet=$!
stop() {
  kill $kubelet 2>/dev/null; wait $kubelet 2>/dev/null
  bash hack/node.sh down-all >/dev/null 2>&1 || true
  bash hack/images.sh stop >/dev/null 2>&1 || true
  kill $pid $kcm $sched 2>/dev/null; wait $pid $kcm $sched 2>/dev/null
}
trap stop INT TERM EXIT
chmod 600 "$base/admin.conf"
echo "Keelson is up on https://127.0.0.1:$port with node $node (logs: $base/*.log)."
echo "  export KUBECONFIG=$base/admin.conf"
echo "  kubectl get nodes; kubectl run hello --image=busybox -- sh -c 'echo hi; sleep 1d'; kubectl logs hello"
echo "Ctrl-C stops it and removes the node."
wait $pid
