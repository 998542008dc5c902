#!/usr/bin/env bash
# Build (or reuse) what the real node of tools/node.sh needs, from pinned Go modules and Debian packages:
#   kubelet                                   (k8s.io/kubernetes, tools/node-bin/kubelet/go.mod)
#   containerd, ctr, containerd-shim-runc-v2  (github.com/containerd/containerd/v2, tools/node-bin/containerd)
#   pause                                     (tools/node-bin/pause: the pod sandbox's process)
#   registry                                  (github.com/distribution/distribution/v3, tools/node-bin/registry)
#   runc, umoci, skopeo, busybox-static, procps, iproute2   (Debian, `apt-get install` when missing)
# Nothing else is downloaded. Binaries go to ${KPO_ASYNC_TOOLS_CACHE:-$HOME/.cache/kpo-async/bin}/<key>/,
# <key> = pinned versions + a hash of the go.mod/go.sum/source files, like tools/build.sh. The last line
# printed on success is that directory; `--print-dir` prints it without building.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${KPO_ASYNC_TOOLS_CACHE:-$HOME/.cache/kpo-async/bin}"
K8S_VERSION=v1.36.3
CONTAINERD_VERSION=v2.4.2
RECIPE=1
DEBS=(runc umoci skopeo busybox-static procps iproute2 util-linux python3 bash)

loud() {
  {
    echo
    echo "############################################################################"
    echo "# tools/build-node.sh FAILED: $*"
    echo "############################################################################"
  } >&2
}

hash_inputs() {
  (cd "$HERE/node-bin" && cat kubelet/go.mod kubelet/go.sum containerd/go.mod containerd/go.sum pause/go.mod pause/main.go \
    registry/go.mod registry/go.sum) |
    sha256sum | cut -c1-12
}
KEY="node-k8s-${K8S_VERSION}_containerd-${CONTAINERD_VERSION}_r${RECIPE}_$(hash_inputs)"
DEST="$CACHE_ROOT/$KEY"
if [ "${1:-}" = "--print-dir" ]; then
  echo "$DEST"
  exit 0
fi

# Debian packages (CI runs as root on a fresh machine). Retries while another dpkg holds the lock.
need_debs=()
for d in "${DEBS[@]}"; do dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q "ok installed" || need_debs+=("$d"); done
if [ "${#need_debs[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { loud "Debian packages missing: ${need_debs[*]} (run as root or install them)"; exit 1; }
  echo "tools/build-node.sh: apt-get install ${need_debs[*]}" >&2
  ok=0
  for _ in $(seq 1 30); do
    if DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_debs[@]}" >&2; then
      ok=1
      break
    fi
    apt-get update >&2 || true
    sleep 10
  done
  [ "$ok" = 1 ] || { loud "apt-get install ${need_debs[*]} failed"; exit 1; }
fi

# name | module dir | package | tags
TARGETS=(
  "kubelet|$HERE/node-bin/kubelet|k8s.io/kubernetes/cmd/kubelet|"
  "containerd|$HERE/node-bin/containerd|github.com/containerd/containerd/v2/cmd/containerd|no_btrfs,no_devmapper,no_zfs"
  "ctr|$HERE/node-bin/containerd|github.com/containerd/containerd/v2/cmd/ctr|no_btrfs,no_devmapper,no_zfs"
  "containerd-shim-runc-v2|$HERE/node-bin/containerd|github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2|no_btrfs,no_devmapper,no_zfs"
  "pause|$HERE/node-bin/pause|.|"
  "registry|$HERE/node-bin/registry|github.com/distribution/distribution/v3/cmd/registry|"
)
missing=()
for t in "${TARGETS[@]}"; do
  [ -x "$DEST/${t%%|*}" ] || missing+=("$t")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "tools/build-node.sh: reusing binaries in $DEST" >&2
  echo "$DEST"
  exit 0
fi

GO="$(command -v go || true)"
[ -n "$GO" ] || { [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go; } || true
[ -n "$GO" ] || { loud "no Go toolchain found"; exit 1; }
mkdir -p "$DEST"
export CGO_ENABLED=0 GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOMAXPROCS="${GOMAXPROCS:-2}"
export GOFLAGS="-trimpath -buildvcs=false -mod=readonly"
k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
K8S_LDFLAGS=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  K8S_LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
CTRD_LDFLAGS="-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"

echo "tools/build-node.sh: building into $DEST with $("$GO" version)" >&2
total_start=$(date +%s)
for t in "${missing[@]}"; do
  IFS='|' read -r name moddir pkg tags <<<"$t"
  start=$(date +%s)
  echo "tools/build-node.sh: building $name ($pkg) ..." >&2
  log="$DEST/.$name.build.log"
  ldflags="-s -w"
  case "$pkg" in
    k8s.io/kubernetes/*) ldflags+="$K8S_LDFLAGS" ;;
    github.com/containerd/*) ldflags+=" $CTRD_LDFLAGS" ;;
  esac
  if ! (cd "$moddir" && nice -n 10 "$GO" build -p 2 -tags="$tags" -ldflags="$ldflags" -o "$DEST/.$name.tmp" "$pkg") \
    >"$log" 2>&1; then
    tail -n 40 "$log" >&2 || true
    rm -f "$DEST/.$name.tmp"
    loud "could not build $name from $pkg (log: $log)"
    exit 1
  fi
  mv -f "$DEST/.$name.tmp" "$DEST/$name"
  echo "tools/build-node.sh: built $name in $(($(date +%s) - start))s" >&2
done
echo "tools/build-node.sh: done in $(($(date +%s) - total_start))s" >&2
echo "$DEST"
