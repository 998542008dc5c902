#!/usr/bin/env bash
# Run a command against the real control plane with a real node: control plane (tools/cluster.sh) +
# kubelet/containerd/runc (tools/node.sh) started unless they run already, the given image names made
# to answer from the node's local shell image (never pulled), new pods sent to the real node, the
# command run from the repository root, then everything this script started stopped again (what was
# already running is left running, with new pods sent back to the kwok node). Exits with the command's
# status; on failure, prints the node's logs. Used by tools/e2e-node.sh and tools/compat-node.sh.
#
#   tools/with-node.sh [--name NAME] [--alias "IMAGE..."] -- COMMAND [ARGS...]
#
# Only one kubelet can run on a machine (they share the /kubepods cgroups): do not run this while
# another real node (a second checkout's node) is up with a different cluster dir.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
NAME="with-node.sh"
ALIASES=""
while [ $# -gt 0 ]; do
  case "$1" in
    --name) NAME="$2"; shift 2 ;;
    --alias) ALIASES="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [--name NAME] [--alias \"IMAGE...\"] -- COMMAND [ARGS...]" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "$NAME: no command given" >&2; exit 2; }
export KPO_ASYNC_CLUSTER_DIR="${KPO_ASYNC_CLUSTER_DIR:-/tmp/kpo-async-cluster}"

started_cluster=0
started_node=0
cleanup() {
  if [ "$started_node" = 1 ]; then "$HERE/node.sh" down || true; else "$HERE/node.sh" target kwok || true; fi
  if [ "$started_cluster" = 1 ]; then "$HERE/cluster.sh" down || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$(date +%s)
if ! "$HERE/cluster.sh" status >/dev/null 2>&1; then
  started_cluster=1
  "$HERE/cluster.sh" up || { echo "$NAME: FAILED: the control plane could not be started" >&2; exit 1; }
fi
t1=$(date +%s)
if ! "$HERE/node.sh" status >/dev/null 2>&1; then
  started_node=1
  "$HERE/node.sh" up || { echo "$NAME: FAILED: the real node could not be started" >&2; exit 1; }
fi
if [ -n "$ALIASES" ]; then
  # shellcheck disable=SC2086  # one word per image name
  "$HERE/node.sh" alias $ALIASES || exit 1
fi
"$HERE/node.sh" target real || exit 1
t2=$(date +%s)
echo "$NAME: control plane ready in $((t1 - t0))s, real node in $((t2 - t1))s${ALIASES:+; images: $ALIASES}"
KUBECTL="$(sed -n 's/^KPO_ASYNC_BIN_DIR=//p' "$KPO_ASYNC_CLUSTER_DIR/cluster.env")/kubectl"
"$KUBECTL" --kubeconfig="$KPO_ASYNC_CLUSTER_DIR/admin.kubeconfig" get nodes -o wide || true

cd "$REPO"
"$@"
rc=$?
if [ "$rc" != 0 ]; then
  echo "$NAME: the command exited $rc; node logs:" >&2
  "$HERE/node.sh" logs 60 >&2 || true
fi
echo "$NAME: total $(($(date +%s) - t0))s (control plane $((t1 - t0))s, node $((t2 - t1))s)"
exit "$rc"
