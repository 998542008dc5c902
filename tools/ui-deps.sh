#!/usr/bin/env bash
# Install what the browser tests (tests/ui, `make ui-test`) need from Debian: the chromium browser
# and its chromium-driver. Nothing is downloaded outside the distribution's packages: Selenium is
# given /usr/bin/chromium and /usr/bin/chromedriver and never fetches a browser or a driver.
# Does nothing when both are installed; needs root (or sudo) otherwise.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "ui-deps.sh: run as root: apt-get install chromium chromium-driver" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
# Another apt may hold the dpkg lock for a while (a fresh machine's own updates): wait for it.
for attempt in 1 2 3 4 5 6 7 8 9 10; do
  if $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver; then
    break
  fi
  [ "$attempt" = 10 ] && { echo "ui-deps.sh: apt-get install chromium chromium-driver failed" >&2; exit 1; }
  echo "ui-deps.sh: apt-get failed (attempt $attempt), retrying in 15 s" >&2
  sleep 15
done
/usr/bin/chromium --version
/usr/bin/chromedriver --version
