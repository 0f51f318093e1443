#!/usr/bin/env bash
# The benchmark: `bash tests/bench/run.sh` (about 8 minutes after the first install) or
# `bash tests/bench/run.sh --quick` (about 4 minutes); the first run also installs its tools
# (tests/bench/install.sh, about 10 minutes). It builds the release binaries, then runs
# tests/bench/run.py, which starts every server on 127.0.0.1, loads each, stops them all and prints a markdown table (also saved as target/bench/results.md, with
# the raw figures in target/bench/results.json and each server's log in target/bench/).
# Other flags: --latency-ms N (a fixed upstream latency), --no-litellm.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash tests/bench/install.sh
cargo build --release --bin sandgate --example bench-upstream --example bench-client
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec timeout --signal=INT 1800 python3 tests/bench/run.py "$@"
