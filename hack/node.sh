#!/usr/bin/env bash
# One Keelson node on this machine: a network namespace with its own address on a host
# bridge, its own pod network (Debian's reference CNI plugins) and its own containerd,
# which pulls through the local registry of hack/images.sh. Idempotent.
#
#   bash hack/node.sh up NAME INDEX     create node NAME (INDEX 1..200) and start its containerd
#   bash hack/node.sh down NAME INDEX   stop its containers and containerd, remove everything
#   bash hack/node.sh down-all          every node under $KEELSON_DATA/nodes, then the bridge
#
# Layout, for node NAME with index I (N = $KEELSON_NET):
#   host bridge $KEELSON_BRIDGE   N.0.1/24; routes each node's pod CIDR to the node
#   netns keelson-NAME            eth0 N.0.(I+10)/24 (veth $KEELSON_BRIDGE-I on the host),
#                                 default route via N.0.1; bridge cni0 10.244.I.1/24 for pods
#   $KEELSON_DATA/nodes/NAME/     pod-cidr (10.244.I.0/24), index, cni/net.d/10-keelson.conflist,
#                                 cni/ipam (host-local's leases), containerd/ (config.toml,
#                                 root, state, certs.d, runc, containerd.sock), containerd.log,
#                                 containerd.pid
# The node's kubelet runs with cgroupRoot /keelson-NAME; `down` removes that cgroup tree.
# Pod traffic between nodes and to the host is routed, not translated; to anywhere else
# it leaves masqueraded as the node (nft table `ip keelson` in the node's netns).
#
# containerd runs in the node's network namespace but in the host's mount namespace
# (nsenter --net, not `ip netns exec`, which would give it a private mount namespace):
# the node's kubelet, started the same way, and containerd then see each other's mounts,
# as on a real node. Its CRI plugin serves the sandbox image registry.k8s.io/pause:3.10,
# mirrors docker.io and registry.k8s.io (and any other registry, via _default) to
# http://N.0.1:$KEELSON_REGISTRY_PORT, and keeps pod network namespaces under its state dir.
#
# Knobs: KEELSON_DATA (default /tmp/keelson), KEELSON_REGISTRY_PORT (5000),
# KEELSON_NET (10.99), KEELSON_BRIDGE (keelson0).
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(realpath -m "${KEELSON_DATA:-/tmp/keelson}")
regport=${KEELSON_REGISTRY_PORT:-5000}
net=${KEELSON_NET:-10.99}
bridge=${KEELSON_BRIDGE:-keelson0}
gw=$net.0.1
cluster_cidr=10.244.0.0/16

die() { echo "node.sh: $*" >&2; exit 1; }

# Sets the node's names and paths from NAME and INDEX.
node_vars() { # name index
  name=$1 index=$2
  [[ $name =~ ^[a-z0-9]([a-z0-9-]*[a-z0-9])?$ ]] || die "node name $name: lowercase letters, digits and '-'"
  if ! [[ $index =~ ^[0-9]+$ ]] || [ "$index" -lt 1 ] || [ "$index" -gt 200 ]; then
    die "index $index: 1..200"
  fi
  dir=$data/nodes/$name
  ns=keelson-$name
  ip=$net.0.$((index + 10))
  veth=$bridge-$index
  [ ${#veth} -le 15 ] || die "interface name $veth is longer than 15 characters"
  cidr=10.244.$index.0/24
  cdir=$dir/containerd
  sock=$cdir/containerd.sock
  cfg=$cdir/config.toml
}

# PIDs of processes whose command line has ARG (a whole NUL-separated word).
pids_with_arg() { # arg
  local p
  for p in /proc/[0-9]*; do
    tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF -- "$1" && echo "${p#/proc/}"
  done
  return 0
}

# Whether PID is alive (and not a zombie).
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# Sends PIDs a signal, then SIGKILL to those still alive after 10 s; waits for them.
stop_pids() { # signal pid...
  local sig=$1 p i left
  shift
  [ $# -gt 0 ] || return 0
  kill -s "$sig" "$@" 2>/dev/null || true
  for i in $(seq 150); do
    left=()
    for p in "$@"; do alive "$p" && left+=("$p"); done
    [ ${#left[@]} -gt 0 ] || return 0
    [ "$i" -ne 100 ] || kill -s KILL "${left[@]}" 2>/dev/null || true
    sleep 0.1
  done
}

ctr_() { timeout 20 ctr --address "$sock" "$@"; }

host_net_up() {
  if ! ip link show "$bridge" >/dev/null 2>&1; then
    ip link add "$bridge" type bridge
  fi
  ip addr replace "$gw/24" dev "$bridge"
  ip link set "$bridge" up
  sysctl -qw net.ipv4.ip_forward=1
}

node_net_up() {
  [ -e "/run/netns/$ns" ] || ip netns add "$ns"
  if ! ip -n "$ns" link show eth0 >/dev/null 2>&1; then
    ip link del "$veth" 2>/dev/null || true
    ip link add "$veth" type veth peer name "${veth}n"
    ip link set "${veth}n" netns "$ns"
    ip -n "$ns" link set "${veth}n" name eth0
  fi
  ip link set "$veth" master "$bridge" up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr replace "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route replace default via "$gw"
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
  # Pods' addresses are routed, not translated, between nodes and to the host: the host
  # routes each node's pod CIDR to the node. Traffic from pods to anywhere else leaves
  # masqueraded as the node (the bridge plugin's ipMasq would also translate
  # pod-to-pod traffic between nodes).
  ip route replace "$cidr" via "$ip" dev "$bridge"
  printf 'table ip keelson\ndelete table ip keelson\ntable ip keelson {\n chain postrouting {\n  type nat hook postrouting priority srcnat; policy accept;\n  ip saddr %s ip daddr != { %s, %s.0.0/24 } masquerade\n }\n}\n' \
    "$cidr" "$cluster_cidr" "$net" | ip netns exec "$ns" nft -f -
}

write_config() {
  local restrict_oom=true
  ! can_lower_oom || restrict_oom=false
  mkdir -p "$dir/cni/net.d" "$dir/cni/ipam" "$cdir"
  echo "$index" >"$dir/index"
  echo "$cidr" >"$dir/pod-cidr"
  cat >"$dir/cni/net.d/10-keelson.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "keelson",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$cidr" }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "$dir/cni/ipam"
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
  local host
  for host in docker.io registry.k8s.io _default; do
    mkdir -p "$cdir/certs.d/$host"
    {
      case $host in
        docker.io) echo 'server = "https://registry-1.docker.io"' ;;
        registry.k8s.io) echo 'server = "https://registry.k8s.io"' ;;
      esac
      printf '\n[host."http://%s:%s"]\n  capabilities = ["pull", "resolve"]\n  skip_verify = true\n' "$gw" "$regport"
    } >"$cdir/certs.d/$host/hosts.toml"
  done
  cat >"$cfg" <<EOF
# Written by hack/node.sh for node $name.
version = 2
root = "$cdir/root"
state = "$cdir/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "$sock"

[ttrpc]
  address = "$sock.ttrpc"

[debug]
  address = "$cdir/debug.sock"
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$cdir/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  stream_server_address = "$ip"
  netns_mounts_under_state_dir = true
  # Clamp oom_score_adj at containerd's own: negative values need CAP_SYS_RESOURCE,
  # which a machine like this one (a VM or container without it) does not grant.
  restrict_oom_score_adj = $restrict_oom

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$cdir/runc"

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$dir/cni/net.d"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$cdir/certs.d"
EOF
}

# Whether this machine lets root lower oom_score_adj (CAP_SYS_RESOURCE, bit 24).
can_lower_oom() { (( (0x$(awk '/^CapEff/ { print $2 }' /proc/self/status) >> 24) & 1 )); }

containerd_up() {
  local pid='' pids=()
  [ -s "$dir/containerd.pid" ] && pid=$(cat "$dir/containerd.pid")
  if alive "$pid" && tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qxF "$cfg"; then
    ctr_ version >/dev/null 2>&1 && return
  else
    # A stale pidfile or socket from a killed run; an unrecorded containerd of ours goes too.
    mapfile -t pids < <(pids_with_arg "$cfg")
    stop_pids TERM "${pids[@]}"
    rm -f "$dir/containerd.pid" "$sock" "$sock.ttrpc" "$cdir/debug.sock"
    setsid nsenter --net="/run/netns/$ns" containerd --config "$cfg" \
      </dev/null >>"$dir/containerd.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/containerd.pid"
  fi
  for _ in $(seq 200); do
    ctr_ version >/dev/null 2>&1 && return
    alive "$pid" || break
    sleep 0.1
  done
  die "containerd of node $name did not come up; see $dir/containerd.log"
}

up() { # name index
  node_vars "$@"
  local other
  for other in "$data"/nodes/*/index; do
    [ -e "$other" ] || continue
    [ "$(cat "$other")" != "$index" ] || [ "$other" = "$dir/index" ] ||
      die "index $index is taken by node $(basename "$(dirname "$other")")"
  done
  for tool in containerd ctr runc nsenter nft /usr/lib/cni/bridge; do
    command -v "$tool" >/dev/null ||
      die "$tool not found (apt-get install containerd runc containernetworking-plugins nftables)"
  done
  host_net_up
  node_net_up
  write_config
  containerd_up
  echo "node $name: netns $ns, $ip, pods $cidr, containerd $sock"
}

# Unmounts everything mounted at or under DIR, deepest first.
unmount_under() { # dir
  local m
  awk -v d="$1" '{ gsub(/\\040/, " ", $5); if ($5 == d || index($5, d "/") == 1) print $5 }' \
    /proc/self/mountinfo | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
}

down() { # name index
  node_vars "$@"
  local ids='' p pids=() shims=() kids=() sockets=() namespaces=()
  if [ -d "$dir" ]; then
    # The pod sandboxes' IDs, for their CNI result caches (libcni keeps them in
    # /var/lib/cni/results, outside the node dir; the networks are keelson and
    # containerd's cni-loopback).
    ids=$(ls "$cdir/root/io.containerd.grpc.v1.cri/sandboxes" 2>/dev/null || true)
    if [ -S "$sock" ] && ctr_ version >/dev/null 2>&1; then
      # Every task killed and deleted, every container removed, in every namespace.
      local n t
      for n in $(ctr_ namespaces ls -q 2>/dev/null); do
        for t in $(ctr_ -n "$n" tasks ls -q 2>/dev/null); do
          ctr_ -n "$n" tasks kill -a -s SIGKILL "$t" >/dev/null 2>&1 || true
        done
        for t in $(ctr_ -n "$n" tasks ls -q 2>/dev/null); do
          ctr_ -n "$n" tasks delete -f "$t" >/dev/null 2>&1 || true
        done
        for t in $(ctr_ -n "$n" containers ls -q 2>/dev/null); do
          ids+=" $t"
          ctr_ -n "$n" containers delete "$t" >/dev/null 2>&1 || true
        done
        namespaces+=("$n")
      done
    fi
    # Whatever survived (containerd or its shims killed, a hung task): runc deletes the
    # containers of the task bundles left in containerd's state (their processes and
    # cgroups; the CRI's runc root is under the node dir, `ctr run`'s is runc's
    # default), then this containerd's shims go, with any children left, and their
    # sockets, then containerd itself.
    local b bns bid root
    for b in "$cdir"/state/io.containerd.runtime.v2.task/*/*/; do
      [ -d "$b" ] || continue
      b=${b%/}
      bid=${b##*/}
      bns=${b%/*}
      bns=${bns##*/}
      namespaces+=("$bns")
      p=$(cat "$b/address" 2>/dev/null || true)
      [ -z "$p" ] || sockets+=("${p#unix://}")
      # `ctr run -d`'s stdio fifos, which containerd would have removed with the container.
      rm -f /run/containerd/fifo/*/"$bid"-std{in,out,err}
      for root in "$cdir/runc/$bns" "/run/containerd/runc/$bns"; do
        [ -d "$root/$bid" ] || continue
        timeout 20 runc --root "$root" delete --force "$bid" >/dev/null 2>&1 || true
      done
    done
    mapfile -t shims < <(pids_with_arg "$sock")
    for p in "${shims[@]}"; do
      mapfile -t -O "${#kids[@]}" kids < <(pgrep -P "$p" || true)
    done
    [ ${#kids[@]} -eq 0 ] || stop_pids KILL "${kids[@]}"
    [ ${#shims[@]} -eq 0 ] || stop_pids KILL "${shims[@]}"
    [ ${#sockets[@]} -eq 0 ] || rm -f "${sockets[@]}"
    mapfile -t pids < <(pids_with_arg "$cfg")
    stop_pids TERM "${pids[@]}"
    unmount_under "$dir"
    for p in $ids; do
      rm -f /var/lib/cni/results/keelson-"$p"-* /var/lib/cni/results/cni-loopback-"$p"-*
    done
  fi
  ip route del "$cidr" via "$ip" dev "$bridge" 2>/dev/null || true
  ip link del "$veth" 2>/dev/null || true
  [ ! -e "/run/netns/$ns" ] || ip netns del "$ns"
  rm -rf "$dir"
  # Empty directories that runc and ctr leave for clients without a runtime root of
  # their own (ctr run): /run/containerd/{runc/NS,fifo,s}, and the namespace's cgroup
  # (/NS/ID is ctr run's cgroup path). Only empty ones go: another containerd may use them.
  for p in "${namespaces[@]}"; do
    rmdir "/run/containerd/runc/$p" /sys/fs/cgroup/*/"$p" /sys/fs/cgroup/"$p" 2>/dev/null || true
  done
  rmdir /run/containerd/fifo/* /run/containerd/runc /run/containerd/fifo /run/containerd/s \
    /run/containerd 2>/dev/null || true
  # The node's cgroup tree: its kubelet runs with cgroupRoot /keelson-NAME (pods under
  # kubepods/...); with every container gone the directories are empty.
  for root in /sys/fs/cgroup/*/"$ns" /sys/fs/cgroup/"$ns"; do
    [ -d "$root" ] && find "$root" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  echo "node $name: down"
}

down_all() {
  local d n
  for d in "$data"/nodes/*/; do
    [ -f "$d/index" ] || { rm -rf "$d"; continue; }
    down "$(basename "$d")" "$(cat "$d/index")"
  done
  rmdir "$data/nodes" /var/lib/cni/results /var/lib/cni 2>/dev/null || true
  # Left over from a removed data dir: empty keelson-* namespaces and their veths.
  for n in $(ip netns list | awk '$1 ~ /^keelson-/ { print $1 }'); do
    [ -z "$(ip netns pids "$n")" ] && ip netns del "$n"
  done
  if ip link show "$bridge" >/dev/null 2>&1 && [ -z "$(ip -o link show master "$bridge")" ]; then
    ip link del "$bridge"
  fi
}

case ${1:-} in
  up) [ $# -eq 3 ] || die "usage: node.sh up NAME INDEX"; up "$2" "$3" ;;
  down) [ $# -eq 3 ] || die "usage: node.sh down NAME INDEX"; down "$2" "$3" ;;
  down-all) down_all ;;
  *) die "usage: node.sh up NAME INDEX | down NAME INDEX | down-all" ;;
esac
