#!/usr/bin/env bash
# The cluster's images, served from a local registry: there is no internet registry,
# so every node's containerd mirrors docker.io and registry.k8s.io to this one (see
# hack/node.sh). Idempotent.
#
#   bash hack/images.sh                        start the registry, build and push the images
#   bash hack/images.sh import FILE REPO:TAG   push a user's image (an OCI or docker
#                                              archive, e.g. from `skopeo copy` or
#                                              `docker save`) so `kubectl run x --image=REPO:TAG`
#                                              pulls it
#   bash hack/images.sh stop                   stop the registry started here (its storage stays)
#
# It starts Debian's docker-registry (distribution v2, no auth) on 0.0.0.0:$port unless a
# registry already answers there, then builds OCI image layouts by hand (gzip'd tar
# layers, config, manifest, index) and pushes them with skopeo, skipping an image that
# the registry already has:
#   pause:3.10                the static `pause` binary (crate keelson-pause) at /pause,
#                             served as registry.k8s.io/pause:3.10, containerd's sandbox image
#   library/busybox:latest    Debian's static busybox with its applets in /bin, served as
#   library/busybox:1.36      docker.io/library/busybox and plain `busybox`
#
# Knobs:
#   KEELSON_DATA            state directory (default /tmp/keelson); the registry's
#                           storage is $KEELSON_DATA/registry, its log registry.log
#   KEELSON_REGISTRY_PORT   the registry's port (default 5000)
#   KEELSON_PAUSE_BIN       a pause binary to use instead of building keelson-pause
#   KEELSON_IMAGES_REBUILD  1: build and push the images even if the registry has them
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(realpath -m "${KEELSON_DATA:-/tmp/keelson}")
port=${KEELSON_REGISTRY_PORT:-5000}
registry=127.0.0.1:$port
epoch=1970-01-01T00:00:00Z

die() { echo "images.sh: $*" >&2; exit 1; }

# Starts the registry unless one answers on $port; waits until GET /v2/ does.
registry_up() {
  curl -fsS -o /dev/null "http://$registry/v2/" 2>/dev/null && return
  if curl -sS -o /dev/null "http://$registry/v2/" 2>/dev/null; then
    die "something on port $port answers GET /v2/ with an error (a registry with auth?); stop it or set KEELSON_REGISTRY_PORT"
  fi
  command -v docker-registry >/dev/null || die "docker-registry not found (apt-get install docker-registry)"
  mkdir -p "$data/registry"
  local pidfile=$data/registry.pid cfg=$data/registry.yml
  if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null &&
    grep -q docker-registry "/proc/$(cat "$pidfile")/cmdline" 2>/dev/null; then
    : # ours, still starting; wait for it below
  else
    rm -f "$pidfile"
    cat >"$cfg" <<EOF
# Written by hack/images.sh: the cluster's local registry (no auth, plain http).
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $data/registry
  delete:
    enabled: true
http:
  addr: 0.0.0.0:$port
  headers:
    X-Content-Type-Options: [nosniff]
EOF
    setsid docker-registry serve "$cfg" </dev/null >>"$data/registry.log" 2>&1 &
    echo $! >"$pidfile"
  fi
  for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://$registry/v2/" 2>/dev/null && return
    kill -0 "$(cat "$pidfile")" 2>/dev/null || break
    sleep 0.1
  done
  die "the registry did not come up on port $port; see $data/registry.log"
}

# Whether the registry has REPO:TAG.
present() {
  curl -fsS -o /dev/null -I \
    -H "Accept: application/vnd.oci.image.manifest.v1+json" \
    -H "Accept: application/vnd.oci.image.index.v1+json" \
    -H "Accept: application/vnd.docker.distribution.manifest.v2+json" \
    -H "Accept: application/vnd.docker.distribution.manifest.list.v2+json" \
    "http://$registry/v2/$1/manifests/$2" 2>/dev/null
}

# The machine's architecture in OCI's words (and its variant, if any).
case $(dpkg --print-architecture) in
  amd64) arch=amd64 variant= ;;
  arm64) arch=arm64 variant=v8 ;;
  armhf) arch=arm variant=v7 ;;
  i386) arch=386 variant= ;;
  ppc64el) arch=ppc64le variant= ;;
  *) arch=$(dpkg --print-architecture) variant= ;;
esac

# Moves FILE into LAYOUT's blobs and prints its descriptor with MEDIATYPE.
blob() { # layout file mediatype
  local digest size
  digest=$(sha256sum "$2" | cut -d' ' -f1)
  size=$(stat -c %s "$2")
  mv "$2" "$1/blobs/sha256/$digest"
  printf '{"mediaType":"%s","digest":"sha256:%s","size":%s}' "$3" "$digest" "$size"
}

# Builds an OCI image layout LAYOUT from the directory ROOTFS (one layer) with the
# config fragment CONFIG (the JSON object's members) and tags it TAG...
build_layout() { # layout rootfs config tag...
  local layout=$1 rootfs=$2 config=$3 diff_id layer cfg manifest refs='' tag entry
  shift 3
  rm -rf "$layout"
  mkdir -p "$layout/blobs/sha256"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  # Reproducible-ish: sorted entries, one mtime, numeric owners 0:0, no gzip name/time.
  (cd "$rootfs" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort) |
    tar -C "$rootfs" --no-recursion -T - --mtime=@0 --owner=0 --group=0 --numeric-owner \
      --format=gnu -cf "$layout/layer.tar"
  diff_id=$(sha256sum "$layout/layer.tar" | cut -d' ' -f1)
  gzip -n -9 "$layout/layer.tar"
  layer=$(blob "$layout" "$layout/layer.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip)
  printf '{"created":"%s","architecture":"%s",%s"os":"linux","config":{%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"%s","created_by":"hack/images.sh"}]}' \
    "$epoch" "$arch" "${variant:+\"variant\":\"$variant\",}" "$config" "$diff_id" "$epoch" >"$layout/config.json"
  cfg=$(blob "$layout" "$layout/config.json" application/vnd.oci.image.config.v1+json)
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' \
    "$cfg" "$layer" >"$layout/manifest.json"
  manifest=$(blob "$layout" "$layout/manifest.json" application/vnd.oci.image.manifest.v1+json)
  for tag in "$@"; do
    # The manifest's descriptor with the tag as its ref.name annotation.
    printf -v entry '%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}' "${manifest%\}}" "$tag"
    refs+=${refs:+,}$entry
  done
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' \
    "$refs" >"$layout/index.json"
}

# Copies SRC (a skopeo transport:reference) to the registry as REPO:TAG.
push() { # src repo:tag
  local out
  out=$(skopeo copy --quiet --dest-tls-verify=false "$1" "docker://$registry/$2" 2>&1) ||
    die "skopeo copy $1 docker://$registry/$2 failed: $out"
}

# The pause binary: $KEELSON_PAUSE_BIN, or keelson-pause built static (release).
pause_bin() { # dest
  if [ -n "${KEELSON_PAUSE_BIN:-}" ]; then
    cp "$KEELSON_PAUSE_BIN" "$1"
    return
  fi
  cargo rustc --quiet -p keelson-pause --release --bin pause -- \
    -C target-feature=+crt-static -C strip=symbols
  cp "${CARGO_TARGET_DIR:-target}/release/pause" "$1"
}

image_pause() {
  local repo=pause tag=3.10 work=$data/images/pause
  if [ "${KEELSON_IMAGES_REBUILD:-0}" != 1 ] && present "$repo" "$tag"; then
    echo "present $registry/$repo:$tag"
    return
  fi
  rm -rf "$work"
  mkdir -p "$work/rootfs"
  pause_bin "$work/rootfs/pause"
  chmod 0755 "$work/rootfs/pause"
  if ldd "$work/rootfs/pause" 2>/dev/null | grep -q /; then
    # Not static (e.g. KEELSON_PAUSE_BIN is a dynamic build): ship its loader and
    # shared libraries at their paths.
    echo "images.sh: $work/rootfs/pause is dynamically linked; copying its libraries into the image" >&2
    ldd "$work/rootfs/pause" | grep -o '/[^ ]*' | while read -r lib; do
      cp -L --parents "$lib" "$work/rootfs/"
    done
  fi
  build_layout "$work/layout" "$work/rootfs" \
    '"User":"65535:65535","Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Entrypoint":["/pause"],"WorkingDir":"/"' \
    "$tag"
  push "oci:$work/layout:$tag" "$repo:$tag"
  echo "pushed $registry/$repo:$tag"
}

image_busybox() {
  local repo=library/busybox tags=(latest 1.36) work=$data/images/busybox tag missing=0 r
  for tag in "${tags[@]}"; do present "$repo" "$tag" || missing=1; done
  if [ "${KEELSON_IMAGES_REBUILD:-0}" != 1 ] && [ "$missing" = 0 ]; then
    for tag in "${tags[@]}"; do echo "present $registry/$repo:$tag"; done
    return
  fi
  [ -x /bin/busybox ] || die "/bin/busybox not found (apt-get install busybox-static)"
  rm -rf "$work"
  r=$work/rootfs
  mkdir -p "$r"/{bin,dev,etc,home,proc,root,sys,tmp,usr,var}
  chmod 0755 "$r" "$r"/{bin,dev,etc,home,proc,sys,usr,var}
  chmod 0700 "$r/root"
  chmod 1777 "$r/tmp"
  cp /bin/busybox "$r/bin/busybox"
  chmod 0755 "$r/bin/busybox"
  /bin/busybox --list | while read -r applet; do
    [ "$applet" = busybox ] || ln -s busybox "$r/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$r/etc/group"
  chmod 0644 "$r/etc/passwd" "$r/etc/group"
  build_layout "$work/layout" "$r" \
    '"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]' \
    "${tags[@]}"
  for tag in "${tags[@]}"; do
    push "oci:$work/layout:$tag" "$repo:$tag"
    echo "pushed $registry/$repo:$tag"
  done
}

# The registry path a user's image reference resolves to through the mirrors: the
# registry host dropped, docker.io's one-word names under library/.
mirror_path() { # reference
  local ref=$1 host=docker.io first=${1%%/*}
  if [ "$first" != "$ref" ] && { [[ $first == *.* || $first == *:* ]] || [ "$first" = localhost ]; }; then
    host=$first
    ref=${ref#*/}
  fi
  [ "$host" = index.docker.io ] && host=docker.io
  [[ $ref == */* || $host != docker.io ]] || ref=library/$ref
  case ${ref##*/} in *:*) ;; *) ref=$ref:latest ;; esac
  echo "$ref"
}

import() { # archive reference
  [ $# -eq 2 ] || die "usage: images.sh import <oci-archive-or-docker-archive.tar> <repo>:<tag>"
  local archive=$1 ref src entries
  [ -f "$archive" ] || die "$archive: no such file"
  [[ $2 != *@* ]] || die "$2: give a tag, not a digest"
  entries=$(tar -tf "$archive") || die "$archive is not a tar archive"
  if grep -qxE '(\./)?oci-layout' <<<"$entries"; then
    src=oci-archive:$archive
  elif grep -qxE '(\./)?manifest.json' <<<"$entries"; then
    src=docker-archive:$archive
  else
    die "$archive is neither an OCI archive (oci-layout) nor a docker archive (manifest.json)"
  fi
  ref=$(mirror_path "$2")
  registry_up
  push "$src" "$ref"
  echo "pushed $registry/$ref (kubectl run x --image=$2)"
}

# Stops the registry this script started (from its pidfile); the storage stays.
stop() {
  local pidfile=$data/registry.pid pid
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if [ -n "$pid" ] && grep -q docker-registry "/proc/$pid/cmdline" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
}

case ${1:-} in
  stop) stop ;;
  import)
    shift
    import "$@"
    ;;
  "")
    registry_up
    image_pause
    image_busybox
    ;;
  *) die "usage: images.sh [import <oci-archive-or-docker-archive.tar> <repo>:<tag> | stop]" ;;
esac
