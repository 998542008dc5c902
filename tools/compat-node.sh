#!/usr/bin/env bash
# The compatibility suite (tests/compat, docs/compat.md) on the real control plane with a real node:
# control plane (tools/cluster.sh) + kubelet/containerd/runc (tools/node.sh), every image the compat
# DAGs and both operators' XCom sidecars name present on the node (local images, never pulled), pods
# sent to the real node, `KPO_ASYNC_COMPAT_CLUSTER=real pytest -m compat tests/compat`, then everything
# this script started is stopped again (what was already running is left running, with new pods sent
# back to the kwok node).
#
#   tools/compat-node.sh [PYTHON] [pytest args...]     PYTHON defaults to .venv/bin/python
#
# Only one kubelet can run on a machine (they share the /kubepods cgroups): do not run this while
# another real node (tools/e2e-node.sh, a second checkout's node) is up with a different cluster dir.
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

# The images the pods name: the DAGs' own, the official operator's pinned XCom sidecar image (read from
# the installed provider, so a provider upgrade is followed) and kpo-async's default sidecar image.
images="$(cd "$REPO" && "$PY" - <<'EOF'
import re
from pathlib import Path

from airflow.providers.cncf.kubernetes.utils.xcom_sidecar import PodDefaults

from kpo_async.pod_builder import PodArguments

names = {PodDefaults.SIDECAR_CONTAINER.image, PodArguments.__dataclass_fields__["xcom_sidecar_image"].default}
for dag in Path("tests/compat/dags").iterdir():
    if dag.suffix in (".py", ".yaml"):
        names.update(re.findall(r"""image[=:]\s*["']?([\w./:-]+)""", dag.read_text()))
print(" ".join(sorted(names)))
EOF
)" || { echo "compat-node.sh: FAILED: could not list the images (is the .[bench] extra installed?)" >&2; exit 1; }

t0=$(date +%s)
if ! "$HERE/cluster.sh" status >/dev/null 2>&1; then
  started_cluster=1
  "$HERE/cluster.sh" up || { echo "compat-node.sh: FAILED: the control plane could not be started" >&2; exit 1; }
fi
t1=$(date +%s)
if ! "$HERE/node.sh" status >/dev/null 2>&1; then
  started_node=1
  "$HERE/node.sh" up || { echo "compat-node.sh: FAILED: the real node could not be started" >&2; exit 1; }
fi
# shellcheck disable=SC2086  # one word per image name
"$HERE/node.sh" alias $images || exit 1
"$HERE/node.sh" target real || exit 1
t2=$(date +%s)
echo "compat-node.sh: control plane ready in $((t1 - t0))s, real node in $((t2 - t1))s; images: $images"

cd "$REPO"
KPO_ASYNC_COMPAT_CLUSTER=real "$PY" -m pytest -q -m compat tests/compat "$@"
rc=$?
if [ "$rc" != 0 ]; then
  echo "compat-node.sh: pytest exited $rc; node logs:" >&2
  "$HERE/node.sh" logs 60 >&2 || true
fi
echo "compat-node.sh: total $(($(date +%s) - t0))s (control plane $((t1 - t0))s, node $((t2 - t1))s)"
exit "$rc"
