#!/usr/bin/env bash
# Run the e2e suite against the real control plane: build or reuse the binaries, start the control
# plane (unless one is already up), run `pytest -m e2e tests/e2e`, print component logs on failure, and
# stop the control plane again if this script started it.
#
#   tools/e2e.sh [PYTHON] [pytest args...]     PYTHON defaults to .venv/bin/python
#
# Exit status is pytest's; a control plane that cannot be built or started is a loud failure
# (never a skip).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
PY="${1:-$REPO/.venv/bin/python}"
shift || true
export KPO_ASYNC_CLUSTER_DIR="${KPO_ASYNC_CLUSTER_DIR:-/tmp/kpo-async-cluster}"

started=0
cleanup() {
  if [ "$started" = 1 ]; then
    "$HERE/cluster.sh" down || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$(date +%s)
if "$HERE/cluster.sh" status >/dev/null 2>&1; then
  echo "e2e.sh: using the control plane already running in $KPO_ASYNC_CLUSTER_DIR (left running)"
else
  started=1
  if ! "$HERE/cluster.sh" up; then
    echo "e2e.sh: FAILED: the real control plane could not be built or started (see above)." >&2
    exit 1
  fi
fi
t1=$(date +%s)
echo "e2e.sh: control plane ready in $((t1 - t0))s"

cd "$REPO"
"$PY" -m pytest -m e2e tests/e2e "$@"
rc=$?
if [ "$rc" != 0 ]; then
  echo "e2e.sh: pytest exited $rc; component logs:" >&2
  "$HERE/cluster.sh" logs 60 || true
fi
echo "e2e.sh: total $(($(date +%s) - t0))s (control plane $((t1 - t0))s)"
exit "$rc"
