#!/usr/bin/env bash
# Where each held stream's bytes go: `bash tests/bench/heap.sh [--streams 1000] [--off]`. Builds
# sandgate with the system allocator (`--features system-allocator`, in target/bench-heap, so the
# benchmark's own build stays as it is) and the bench upstream and client, then runs
# tests/bench/heap.py: the streams held open under heaptrack, its peak consumers a stream printed
# and saved in full as target/bench/heap.txt. Installs heaptrack from apt when it is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v heaptrack >/dev/null 2>&1; then
    echo "heap: apt-get install heaptrack"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends heaptrack >/dev/null
fi
cargo build --release --example bench-upstream --example bench-client
CARGO_TARGET_DIR=target/bench-heap cargo build --release --features system-allocator --bin sandgate
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec timeout --signal=INT 900 python3 tests/bench/heap.py "$@"
