#!/usr/bin/env bash
# The e2e suite on the real node: control plane (tools/cluster.sh) + kubelet/containerd/runc
# (tools/node.sh), pods sent to the real node, `KPO_ASYNC_E2E_NODE=real pytest -m e2e tests/e2e`, then
# everything this script started is stopped again (what was already running is left running, with new
# pods sent back to the kwok node).
#
#   tools/e2e-node.sh [PYTHON] [pytest args...]     PYTHON defaults to .venv/bin/python
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
PY="${1:-$REPO/.venv/bin/python}"
shift || true
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
  "$HERE/cluster.sh" up || { echo "e2e-node.sh: FAILED: the control plane could not be started" >&2; exit 1; }
fi
t1=$(date +%s)
if ! "$HERE/node.sh" status >/dev/null 2>&1; then
  started_node=1
  "$HERE/node.sh" up || { echo "e2e-node.sh: FAILED: the real node could not be started" >&2; exit 1; }
fi
"$HERE/node.sh" target real || exit 1
t2=$(date +%s)
echo "e2e-node.sh: control plane ready in $((t1 - t0))s, real node in $((t2 - t1))s"
KUBECTL="$(sed -n 's/^KPO_ASYNC_BIN_DIR=//p' "$KPO_ASYNC_CLUSTER_DIR/cluster.env")/kubectl"
"$KUBECTL" --kubeconfig="$KPO_ASYNC_CLUSTER_DIR/admin.kubeconfig" get nodes -o wide || true

cd "$REPO"
KPO_ASYNC_E2E_NODE=real "$PY" -m pytest -m e2e tests/e2e "$@"
rc=$?
if [ "$rc" != 0 ]; then
  echo "e2e-node.sh: pytest exited $rc; node logs:" >&2
  "$HERE/node.sh" logs 60 >&2 || true
fi
echo "e2e-node.sh: total $(($(date +%s) - t0))s (control plane $((t1 - t0))s, node $((t2 - t1))s)"
exit "$rc"
