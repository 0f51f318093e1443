#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what the tests need (Debian packages, npm and
# pip dependencies, Pyodide and wheels, all from package registries), then runs every test.
#
#   bash tests/run.sh
#
# Each tests/setup/*.sh installs one group of dependencies and is safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

for setup in tests/setup/*.sh; do
  [ -e "$setup" ] || continue
  echo "== setup: $setup"
  bash "$setup"
done

# The sandbox worker's Python runner (served inside worker.js) is linted as the Python file it is.
echo "== pyflakes templates/runner.py"
target/venv/bin/python -m pyflakes templates/runner.py

echo "== cargo test"
cargo test --all-targets --no-fail-fast
