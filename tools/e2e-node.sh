#!/usr/bin/env bash
# The e2e suite on the real node: `KPO_ASYNC_E2E_NODE=real pytest -m e2e tests/e2e` run by
# tools/with-node.sh (control plane + kubelet/containerd/runc up unless running, pods sent to the real
# node, what it started stopped again afterwards).
#
#   tools/e2e-node.sh [PYTHON] [pytest args...]     PYTHON defaults to .venv/bin/python
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
PY="${1:-$REPO/.venv/bin/python}"
shift || true

exec "$HERE/with-node.sh" --name e2e-node.sh -- env KPO_ASYNC_E2E_NODE=real "$PY" -m pytest -m e2e tests/e2e "$@"
