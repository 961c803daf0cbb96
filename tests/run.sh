#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine and runs every test:
# lint, unit, integration (against the simulated server), notebooks (nbval) and browser (Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing Debian's chromium for the browser tests"
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -q && apt-get install -y -q chromium
  else
    sudo apt-get update -q && sudo apt-get install -y -q chromium
  fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== ruff"
.venv/bin/ruff check .

# Two sessions: Playwright's sync API keeps an event loop running on the main thread for as
# long as its session fixture lives, which would break the asyncio tests after it.
status=0
echo "== pytest: unit, integration, notebooks"
.venv/bin/python -m pytest -q -p no:cacheprovider -p tests.nbval_home tests notebooks --nbval-lax \
  --ignore=tests/browser "$@" || status=$?
echo "== pytest: JupyterLab in headless Chromium"
.venv/bin/python -m pytest -q -p no:cacheprovider tests/browser "$@" || status=$?
exit "$status"
