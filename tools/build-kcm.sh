#!/usr/bin/env bash
# Build (or reuse) kube-controller-manager for the real control plane (tools/cluster.sh), from the
# pinned Go module tools/kcm-bin (k8s.io/kubernetes at the same version as kube-apiserver in tools/go.mod).
# It has its own module and cache key because it links kubelet and volume packages that tools/go.sum
# does not cover: tools/build.sh's key (and so its binaries) stays as it is.
#
# The binary goes to ${KPO_ASYNC_TOOLS_CACHE:-$HOME/.cache/kpo-async/bin}/<key>/, <key> = pinned version
# + a hash of tools/kcm-bin/go.mod and go.sum, built with tools/build.sh's settings. The last line
# printed on success is that directory; `--print-dir` prints it without building.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${KPO_ASYNC_TOOLS_CACHE:-$HOME/.cache/kpo-async/bin}"
K8S_VERSION=v1.36.3 # must match tools/go.mod and tools/kcm-bin/go.mod
RECIPE=1
PKG=k8s.io/kubernetes/cmd/kube-controller-manager

loud() {
  {
    echo
    echo "############################################################################"
    echo "# tools/build-kcm.sh FAILED: $*"
    echo "# The real control plane cannot start without kube-controller-manager."
    echo "############################################################################"
  } >&2
}

KEY="kcm-k8s-${K8S_VERSION}_r${RECIPE}_$(cat "$HERE/kcm-bin/go.mod" "$HERE/kcm-bin/go.sum" | sha256sum | cut -c1-12)"
DEST="$CACHE_ROOT/$KEY"
if [ "${1:-}" = "--print-dir" ]; then
  echo "$DEST"
  exit 0
fi
if [ -x "$DEST/kube-controller-manager" ]; then
  echo "tools/build-kcm.sh: reusing $DEST/kube-controller-manager" >&2
  echo "$DEST"
  exit 0
fi

GO="$(command -v go || true)"
[ -n "$GO" ] || { [ -x /usr/local/go/bin/go ] && GO=/usr/local/go/bin/go; } || true
[ -n "$GO" ] || { loud "no Go toolchain found (looked for 'go' on PATH and /usr/local/go/bin/go)"; exit 1; }
mkdir -p "$DEST"
# Same settings as tools/build.sh: niced, two compile jobs at most, version-stamped.
export CGO_ENABLED=0 GOTOOLCHAIN="${GOTOOLCHAIN:-local}" GOMAXPROCS="${GOMAXPROCS:-2}"
export GOFLAGS="-trimpath -buildvcs=false -mod=readonly"
k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

echo "tools/build-kcm.sh: building kube-controller-manager into $DEST with $("$GO" version) ..." >&2
start=$(date +%s)
log="$DEST/.kube-controller-manager.build.log"
if ! (cd "$HERE/kcm-bin" && nice -n 10 "$GO" build -p 2 -ldflags="$ldflags" -o "$DEST/.kube-controller-manager.tmp" "$PKG") \
  >"$log" 2>&1; then
  tail -n 40 "$log" >&2 || true
  rm -f "$DEST/.kube-controller-manager.tmp"
  loud "could not build kube-controller-manager from $PKG (log: $log)"
  exit 1
fi
mv -f "$DEST/.kube-controller-manager.tmp" "$DEST/kube-controller-manager"
echo "tools/build-kcm.sh: built kube-controller-manager in $(($(date +%s) - start))s" >&2
echo "$DEST"
