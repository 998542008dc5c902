#!/usr/bin/env bash
# The compatibility suite (tests/compat, docs/compat.md) on the real control plane with a real node:
# `KPO_ASYNC_COMPAT_CLUSTER=real pytest -m compat tests/compat` run by tools/with-node.sh (control plane
# + kubelet/containerd/runc up unless running, pods sent to the real node, what it started stopped
# again afterwards), with every image the compat DAGs and both operators' XCom sidecars name present on
# the node (local images, never pulled).
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

# The images the pods name: the DAGs' own, the official operator's pinned XCom sidecar image (read from
# the installed provider, so a provider upgrade is followed) and kpo-async's default sidecar image;
# each is given to the node's shell image.
images="$(cd "$REPO" && "$PY" - <<'EOF'
import re
from pathlib import Path

from airflow.providers.cncf.kubernetes.utils.xcom_sidecar import PodDefaults

from kpo_async.pod_builder import PodArguments

names = {PodDefaults.SIDECAR_CONTAINER.image, PodArguments.__dataclass_fields__["xcom_sidecar_image"].default}
for dag in Path("tests/compat/dags").iterdir():
    if dag.suffix in (".py", ".yaml"):
        names.update(re.findall(r"""image[=:]\s*["']?([\w./:-]+)""", dag.read_text()))
# python:3.12-slim is the node's own python image (tools/node.sh): not an alias of the shell image
print(" ".join(sorted(n for n in names if not n.startswith("python:"))))
EOF
)" || { echo "compat-node.sh: FAILED: could not list the images (is the .[bench] extra installed?)" >&2; exit 1; }

exec "$HERE/with-node.sh" --name compat-node.sh --alias "$images" -- \
  env KPO_ASYNC_COMPAT_CLUSTER=real "$PY" -m pytest -q -m compat tests/compat "$@"
