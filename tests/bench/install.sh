#!/usr/bin/env bash
# Installs the benchmark's tools on a Debian machine, idempotently and without questions: nginx and
# wrk from apt, oha from crates.io (into target/bench-tools), LiteLLM's proxy from PyPI (into
# target/bench-venv). Only the benchmark calls this; the test command never installs these.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
export DEBIAN_FRONTEND=noninteractive

need_apt=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-venv)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "install: apt-get install ${need_apt[*]}"
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# Debian starts nginx as a service on install; the benchmark runs its own instance.
if command -v systemctl >/dev/null 2>&1; then systemctl stop nginx >/dev/null 2>&1 || true; fi
if [ -f /run/nginx.pid ]; then kill "$(cat /run/nginx.pid)" 2>/dev/null || true; fi

if [ ! -x "$ROOT/target/bench-tools/bin/oha" ]; then
    echo "install: cargo install oha (a few minutes)"
    cargo install --quiet --locked oha --root "$ROOT/target/bench-tools"
fi

VENV=$ROOT/target/bench-venv
if [ ! -x "$VENV/bin/litellm" ]; then
    echo "install: pip install litellm[proxy] into target/bench-venv"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet 'litellm[proxy]'
fi
