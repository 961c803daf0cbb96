#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine and runs every test:
# lint, unit, integration (against the simulated server), notebooks (nbval) and browser (Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need: chromium (browser tests) and postgresql (the store tests
# start a throwaway PostgreSQL server on 127.0.0.1, see tests/pg_server.py).
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "== installing Debian's ${missing[*]} for the tests"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q && $sudo apt-get install -y -q "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,postgres]'

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
