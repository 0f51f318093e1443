#!/usr/bin/env bash
# Runs the fuzz targets for a bounded time each (default 60 s), seeded from the test fixtures and the
# recorded OpenAI streams.
#
#   bash tests/fuzz/run.sh [seconds-per-target]
#
# cargo-fuzz needs nightly features; the stable toolchain here provides them with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

corpus=tests/fuzz/corpus
mkdir -p "$corpus/rewrite" "$corpus/sse"
i=0
for f in tests/fixtures/rewrite/*/input.md; do
  i=$((i + 1))
  for control in 00 04 01 05 02 06; do
    { printf "\\x$control\\x05"; cat "$f"; } > "$corpus/rewrite/fixture-$i-$control"
  done
done
i=0
for f in tests/fixtures/openai-recorded/*.sse; do
  [ -e "$f" ] || continue
  i=$((i + 1))
  { printf '\x00'; cat "$f"; } > "$corpus/sse/recorded-$i"
  { printf '\x1c'; cat "$f"; } > "$corpus/sse/recorded-$i-small-chunks"
done

for target in rewrite sse; do
  echo "== fuzz $target for ${secs}s"
  cargo fuzz run --fuzz-dir tests/fuzz "$target" "$corpus/$target" -- -max_total_time="$secs" -print_final_stats=1 2>&1 \
    | grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE|==[0-9]+== ERROR|SUMMARY)|panicked' || true
  if [ -d "tests/fuzz/artifacts/$target" ] && [ -n "$(ls -A "tests/fuzz/artifacts/$target" 2>/dev/null)" ]; then
    echo "findings in tests/fuzz/artifacts/$target:"; ls "tests/fuzz/artifacts/$target"; exit 1
  fi
done
