#!/usr/bin/env bash
# The README's test command: installs what the tests drive (etcd, etcdctl, protoc)
# from Debian's packages if missing, then runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# The node environment (hack/node.sh, hack/images.sh): containerd and runc, the CNI
# plugins (bridge and portmap need iptables), nftables, the registry, skopeo, and the
# static busybox that the busybox image is made of.
for p in etcd-client etcd-server protobuf-compiler iproute2 procps openssl curl \
  containerd runc containernetworking-plugins iptables nftables skopeo docker-registry \
  busybox-static; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# Debian's etcd-server package may start a system etcd; the tests start their own.
pkill -x etcd 2>/dev/null || true
# docker-registry's postinst may start the system registry on :5000 through its init
# script (htpasswd auth, /var/lib/docker-registry); hack/images.sh starts its own there.
# containerd's package has only a systemd unit, so nothing starts it here; the nodes'
# containerds use their own sockets and state anyway.
if [[ " ${need[*]} " == *" docker-registry "* ]] && [ -x /etc/init.d/docker-registry ]; then
  /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
fi

# The Python client test's interpreter: a venv with the `kubernetes` client from PyPI.
py=target/e2e-python
if ! "$py/bin/python" -c "import kubernetes" 2>/dev/null; then
  if ! python3 -m venv "$py" 2>/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3 python3-venv
    python3 -m venv "$py"
  fi
  "$py/bin/pip" install -q --disable-pip-version-check "kubernetes==33.1.0"
fi
export KEELSON_PYTHON=$PWD/$py/bin/python

cargo test --workspace "$@"
