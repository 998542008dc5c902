#!/usr/bin/env bash
# Build the real node's container images from this machine's Debian packages, no registry involved:
#   shell.tar   busybox-static (every applet linked in /bin) + Debian's bash and pgrep: stands in for alpine:3.20,
#               ubuntu:24.04, busybox:1.36 (the names the example DAGs and tests use)
#   python.tar  the shell image + Debian's python3 (interpreter, stdlib, the shared libraries they
#               load): stands in for python:3.12-slim
#   pause.tar   tools/node-bin/pause (the pod sandbox)
#   registry-shell.tar   the shell image with one more label: what tools/node.sh pushes to its registry
# Each is an OCI image written by umoci and turned into a docker-archive tar by skopeo, cached in
# $KPO_ASYNC_TOOLS_CACHE/../images/<key>/. tools/node.sh imports them with `ctr images import`.
#
#   tools/node/images.sh BIN_DIR      prints the directory holding the tars
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="$1"
CACHE_ROOT="${KPO_ASYNC_TOOLS_CACHE:-$HOME/.cache/kpo-async/bin}/../images"
RECIPE=2
PY="$(readlink -f /usr/bin/python3)"
key="r${RECIPE}_$( (sha256sum "$HERE/images.sh" "$BIN/pause" /bin/busybox /bin/bash "$PY" | cut -c1-64) | sha256sum | cut -c1-12)"
OUT="$(mkdir -p "$CACHE_ROOT" && cd "$CACHE_ROOT" && pwd)/$key"
if [ -s "$OUT/shell.tar" ] && [ -s "$OUT/python.tar" ] && [ -s "$OUT/pause.tar" ] && [ -s "$OUT/registry-shell.tar" ]; then
  echo "$OUT"
  exit 0
fi
for c in umoci skopeo busybox pgrep; do command -v "$c" >/dev/null || { echo "images.sh: $c missing" >&2; exit 1; }; done

work="$(mktemp -d /tmp/kpo-async-images.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$OUT"

# copy_with_libs ROOTFS FILE...: the files plus every shared library ldd lists for them.
copy_with_libs() {
  local root="$1" f lib
  shift
  for f in "$@"; do
    cp -a --parents "$f" "$root/"
    for lib in $(ldd "$f" 2>/dev/null | grep -o '/[^ ]*' || true); do
      [ -e "$root$lib" ] || cp -L --parents "$lib" "$root/"
    done
  done
}

base_rootfs() { # base_rootfs DIR: busybox with every applet, bash, /etc basics
  local r="$1" a
  mkdir -p "$r"/{bin,etc,tmp,root,proc,sys,dev,usr/local/bin,var}
  chmod 1777 "$r/tmp"
  ln -s bin "$r/sbin"
  ln -s ../bin "$r/usr/bin"
  ln -s ../bin "$r/usr/sbin"
  cp /bin/busybox "$r/bin/busybox"
  for a in $(busybox --list); do [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"; done
  # Debian's bash (the example DAGs run `bash -cx`), with its libraries.
  rm -f "$r/bin/bash"
  copy_with_libs "$r" /bin/bash
  # procps' pgrep/pkill: Debian's busybox has no such applets, alpine's has; the official operator stops
  # its XCom sidecar with `kill -2 $(pgrep -u $(id -u) -f 'sh')`.
  copy_with_libs "$r" /usr/bin/pgrep
  ln -sf pgrep "$r/bin/pkill"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  : >"$r/etc/hosts"
}

# image NAME CMD ROOTFS_FN [ENV...]: an OCI image from a rootfs built by ROOTFS_FN, as a docker-archive tar.
image() {
  local name="$1" cmd="$2" fn="$3" layout="$work/$1-oci" bundle="$work/$1-bundle" e envs=()
  shift 3
  for e in "$@"; do envs+=(--config.env="$e"); done
  umoci init --layout "$layout"
  umoci new --image "$layout:latest"
  umoci unpack --image "$layout:latest" "$bundle" >/dev/null
  "$fn" "$bundle/rootfs"
  umoci repack --image "$layout:latest" "$bundle"
  umoci config --image "$layout:latest" --config.cmd="$cmd" \
    --config.env="PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin" --config.workingdir=/ "${envs[@]}"
  rm -f "$OUT/$name.tar"
  skopeo copy --quiet "oci:$layout:latest" "docker-archive:$OUT/$name.tar:kpo-async.local/$name:1"
}

shell_rootfs() { base_rootfs "$1"; }
python_rootfs() {
  local r="$1" stdlib f
  base_rootfs "$r"
  stdlib="$(dirname "$(/usr/bin/python3 -c 'import os; print(os.__file__)')")"
  copy_with_libs "$r" "$PY"
  ln -sf "$(basename "$PY")" "$r/bin/python3"
  ln -sf python3 "$r/bin/python"
  tar -C / --exclude='*/test' --exclude='*/tests' --exclude='*/idlelib' --exclude='*/tkinter' \
    --exclude='*/ensurepip' --exclude='__pycache__' -cf - "${stdlib#/}" | tar -C "$r" -xf -
  for f in "$stdlib"/lib-dynload/*.so; do copy_with_libs "$r" "$f"; done
}
pause_rootfs() {
  cp "$BIN/pause" "$1/pause"
}

t0=$(date +%s)
image shell sh shell_rootfs
image python python3 python_rootfs PYTHONHOME=/usr
image pause /pause pause_rootfs
# The copy pushed to the project's registry: the shell image with one more label, so its image ID differs
# (containerd's CRI image cache lost the imported names when a pull brought the same image ID under a new name).
umoci config --image "$work/shell-oci:latest" --tag registry --config.label=io.kpo-async.copy=registry
skopeo copy --quiet "oci:$work/shell-oci:registry" "docker-archive:$OUT/registry-shell.tar:kpo-async.local/registry-shell:1"
echo "images.sh: built shell, python, pause images in $(($(date +%s) - t0))s into $OUT" >&2
echo "$OUT"
