#!/usr/bin/env bash
# Build (or reuse) the binaries of the e2e control plane from pinned Go modules:
#   kube-apiserver, kube-scheduler, kubectl (k8s.io/kubernetes, tools/go.mod)
#   etcd                            (go.etcd.io/etcd/server/v3, tools/go.mod)
#   kwok                            (sigs.k8s.io/kwok, tools/kwok-bin/go.mod, + tools/kwok-bin/patches)
#   kwok-crds/                      (the Exec and Logs CRDs from the same kwok module)
# Everything comes through this machine's Go toolchain and the Go module proxy; nothing else is downloaded.
#
# Binaries go to ${KPO_ASYNC_TOOLS_CACHE:-$HOME/.cache/kpo-async/bin}/<key>/ where <key> names the pinned
# versions plus a hash of the go.mod/go.sum files, so a rerun with unchanged pins is instant and a pin
# change builds into a new directory.  The last line printed on success is that directory; `--print-dir`
# prints it without building.
#
# Exit status: 0 when every binary exists (built or reused); non-zero with a loud message otherwise.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${KPO_ASYNC_TOOLS_CACHE:-$HOME/.cache/kpo-async/bin}"

# Pins (must match tools/go.mod and tools/kwok-bin/go.mod).
K8S_VERSION=v1.36.3
ETCD_VERSION=v3.6.8
KWOK_VERSION=v0.8.0
# Bump when the way binaries are built changes (flags, ldflags), so caches rebuild.
RECIPE=2

loud() {
  {
    echo
    echo "############################################################################"
    echo "# tools/build.sh FAILED: $*"
    echo "# The real-control-plane e2e tests cannot run without these binaries."
    echo "############################################################################"
  } >&2
}

find_go() {
  if command -v go >/dev/null 2>&1; then command -v go; return; fi
  if [ -x /usr/local/go/bin/go ]; then echo /usr/local/go/bin/go; return; fi
  return 1
}

# kwok is built with two of its source files replaced: see tools/kwok-bin/patches/ and prepare_kwok_src.
KWOK_PATCHES=(debugging_exec.go debugging_logs.go)

hash_inputs() {
  (
    cd "$HERE"
    cat go.mod go.sum kwok-bin/go.mod kwok-bin/go.sum
    for p in "${KWOK_PATCHES[@]}"; do cat "kwok-bin/patches/$p"; done
  ) | sha256sum | cut -c1-12
}

KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_r${RECIPE}_$(hash_inputs)"
DEST="$CACHE_ROOT/$KEY"

if [ "${1:-}" = "--print-dir" ]; then
  echo "$DEST"
  exit 0
fi

# name | module dir | package
TARGETS=(
  "kube-apiserver|$HERE|k8s.io/kubernetes/cmd/kube-apiserver"
  "kube-scheduler|$HERE|k8s.io/kubernetes/cmd/kube-scheduler"
  "kubectl|$HERE|k8s.io/kubernetes/cmd/kubectl"
  "etcd|$HERE|go.etcd.io/etcd/server/v3"
  "kwok|$HERE/kwok-bin|sigs.k8s.io/kwok/cmd/kwok"
)

KWOK_CRDS=(kwok.x-k8s.io_execs.yaml kwok.x-k8s.io_logs.yaml)

missing=()
for t in "${TARGETS[@]}"; do
  name="${t%%|*}"
  [ -x "$DEST/$name" ] || missing+=("$t")
done
crds_ok=1
for c in "${KWOK_CRDS[@]}"; do [ -s "$DEST/kwok-crds/$c" ] || crds_ok=0; done

if [ "${#missing[@]}" -eq 0 ] && [ "$crds_ok" = 1 ]; then
  echo "tools/build.sh: reusing binaries in $DEST" >&2
  echo "$DEST"
  exit 0
fi

if ! GO="$(find_go)"; then
  loud "no Go toolchain found (looked for 'go' on PATH and /usr/local/go/bin/go)"
  exit 1
fi

mkdir -p "$DEST"
# Build one binary at a time, niced, two parallel compile jobs at most: the machine has 2 cores and
# other people run tests on it.
export CGO_ENABLED=0
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="-trimpath -buildvcs=false -mod=readonly"
export GOMAXPROCS="${GOMAXPROCS:-2}"

# Stamp the Kubernetes binaries with their real version (a plain `go build` reports v0.0.0-master, which
# would show up in /version and in kubectl's version-skew warnings).
k8s_minor="${K8S_VERSION#v1.}"; k8s_minor="${k8s_minor%%.*}"
K8S_LDFLAGS=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  K8S_LDFLAGS+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
  K8S_LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

# Where the go command keeps the kwok module source (for its CRDs and the patched build below).
if ! kwokdir="$(cd "$HERE/kwok-bin" && "$GO" mod download -json sigs.k8s.io/kwok |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')" || [ -z "$kwokdir" ]; then
  loud "could not download/locate the sigs.k8s.io/kwok module source"
  exit 1
fi
# kwok is built from a copy of that source with the patched files dropped in (go refuses -overlay for
# files inside GOMODCACHE), through a throw-away copy of tools/kwok-bin/go.mod that replaces
# sigs.k8s.io/kwok with the copy. Every other module still comes, verified, from go.sum.
prepare_kwok_src() {
  local work="$DEST/.kwok-build"
  rm -rf "$work"
  mkdir -p "$work/mod"
  cp -R "$kwokdir" "$work/kwok-src"
  chmod -R u+w "$work/kwok-src"
  for p in "${KWOK_PATCHES[@]}"; do
    [ -f "$work/kwok-src/pkg/kwok/server/$p" ] || { loud "kwok source file pkg/kwok/server/$p not found"; exit 1; }
    cp "$HERE/kwok-bin/patches/$p" "$work/kwok-src/pkg/kwok/server/$p"
  done
  cp "$HERE/kwok-bin/go.mod" "$HERE/kwok-bin/go.sum" "$work/mod/"
  (cd "$work/mod" && GOFLAGS=-mod=mod "$GO" mod edit -replace "sigs.k8s.io/kwok=$work/kwok-src")
  echo "$work/mod"
}

echo "tools/build.sh: building into $DEST with $("$GO" version)" >&2
total_start=$(date +%s)
for t in "${missing[@]}"; do
  IFS='|' read -r name moddir pkg <<<"$t"
  start=$(date +%s)
  echo "tools/build.sh: building $name ($pkg) ..." >&2
  log="$DEST/.$name.build.log"
  ldflags="-s -w"
  case "$pkg" in
    k8s.io/kubernetes/*) ldflags+="$K8S_LDFLAGS" ;;
    sigs.k8s.io/kwok/*) moddir="$(prepare_kwok_src)" ;;
  esac
  if ! (cd "$moddir" && nice -n 10 "$GO" build -p 2 -ldflags="$ldflags" -o "$DEST/.$name.tmp" "$pkg") \
    >"$log" 2>&1; then
    tail -n 40 "$log" >&2 || true
    rm -f "$DEST/.$name.tmp"
    loud "could not build $name from $pkg (log: $log)"
    exit 1
  fi
  mv -f "$DEST/.$name.tmp" "$DEST/$name"
  rm -rf "$DEST/.kwok-build"
  echo "tools/build.sh: built $name in $(( $(date +%s) - start ))s" >&2
done
if [ "$crds_ok" = 0 ]; then
  mkdir -p "$DEST/kwok-crds"
  for c in "${KWOK_CRDS[@]}"; do
    if ! cp "$kwokdir/kustomize/crd/bases/$c" "$DEST/kwok-crds/$c"; then
      loud "kwok CRD $c not found in $kwokdir"
      exit 1
    fi
  done
fi
echo "tools/build.sh: done in $(( $(date +%s) - total_start ))s" >&2
echo "$DEST"
