#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh machine and runs every check:
# ruff (lint + format), mypy, unit, integration (against the simulated server), notebooks (nbval),
# a smoke test of the built wheel in a fresh venv, and the browser suite (JupyterLab in Chromium).
# Each step prints its duration; the script exits non-zero if any step failed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

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

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cw-run.XXXXXX")
BG_PIDS=()
cleanup() {
  for pid in "${BG_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

status=0
timings=()
# step NAME COMMAND...: run one check, record its time, remember a failure and go on.
step() {
  local name=$1 start=$SECONDS rc=0
  shift
  echo "== $name"
  "$@" || rc=$?
  timings+=("$(printf '%-40s %4d s  %s' "$name" $((SECONDS - start)) "$([ $rc -eq 0 ] && echo ok || echo "FAILED ($rc)")")")
  if [ $rc -ne 0 ]; then status=1; fi
  return 0
}

# The wheel smoke test: build the wheel from the files git knows (no stale build/ or egg-info),
# install it with the sim extra into a fresh venv, and run tests/wheel_smoke.py from a folder
# outside the checkout, so only the installed copy can be imported.
wheel_smoke() {
  local src="$WORK/src" t=$SECONDS
  mkdir -p "$src" "$WORK/outside"
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -co --exclude-standard -z | tar --null --ignore-failed-read -cf - -T - | tar -xf - -C "$src"
  else
    tar --exclude=.venv --exclude=build --exclude='*.egg-info' -cf - . | tar -xf - -C "$src"
  fi
  (cd "$src" && "$ROOT/.venv/bin/python" -m pip wheel -q --disable-pip-version-check --no-deps . -w "$WORK/dist")
  echo "wheel built in $((SECONDS - t)) s"
  t=$SECONDS
  python3 -m venv "$WORK/venv"
  local wheel
  wheel=$(ls "$WORK"/dist/comfy_widgets-*.whl)
  "$WORK/venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel[sim]"
  echo "fresh venv with the wheel and its deps in $((SECONDS - t)) s"
  t=$SECONDS
  cp tests/wheel_smoke.py "$WORK/outside/"
  (cd "$WORK/outside" && env -u PYTHONPATH COMFY_WIDGETS_HOME="$WORK/home" \
    "$WORK/venv/bin/python" wheel_smoke.py)
  echo "smoke script ran in $((SECONDS - t)) s"
}

# mypy over the package but the simulator (config in pyproject.toml): any error fails the run.
# Its cache (.mypy_cache, kept between runs) makes a re-run take about a second; a cold run
# costs about 8 s of CPU, beside pytest.
type_check() {
  .venv/bin/mypy
}

# background NAME FUNCTION: run FUNCTION (errexit on) beside the next steps, output to a log.
background() {
  local name=$1 fn=$2
  (
    set +e
    t=$SECONDS
    (set -e; "$fn")
    echo "$((SECONDS - t)) $?" >"$WORK/$name.status"
  ) >"$WORK/$name.log" 2>&1 &
  BG_PIDS+=("$!")
}
# collect NAME LABEL: wait for a background step, show its output, record its time and result.
collect() {
  local name=$1 label=$2 secs rc
  echo "== $label"
  wait "${BG_PIDS[0]}" || true
  BG_PIDS=("${BG_PIDS[@]:1}")
  cat "$WORK/$name.log"
  read -r secs rc <"$WORK/$name.status" || { secs=0; rc=1; }
  timings+=("$(printf '%-40s %4d s  %s' "$label" "$secs" "$([ "$rc" -eq 0 ] && echo ok || echo "FAILED ($rc)")")")
  if [ "$rc" -ne 0 ]; then status=1; fi
}

# The wheel build and venv install mostly wait on pip, and pytest mostly waits on servers:
# the wheel smoke test and mypy run beside it.
background wheel wheel_smoke
background mypy type_check

step "ruff check" .venv/bin/ruff check .
step "ruff format --check" .venv/bin/ruff format --check .

# Two sessions: Playwright's sync API keeps an event loop running on the main thread for as
# long as its session fixture lives, which would break the asyncio tests after it.
step "pytest: unit, integration, notebooks" \
  .venv/bin/python -m pytest -q -p no:cacheprovider -p tests.nbval_home tests notebooks --nbval-lax \
  --ignore=tests/browser "$@"

collect wheel "wheel smoke (built, fresh venv, outside)"
collect mypy "mypy"

step "pytest: JupyterLab in headless Chromium" \
  .venv/bin/python -m pytest -q -p no:cacheprovider tests/browser "$@"

echo "== timings"
printf '%s\n' "${timings[@]}"
exit "$status"
