#!/usr/bin/env bash
# Installs the official openai SDKs that tests/it/sdk.rs drives against sandgate:
#   - Python: a venv at target/venv with the `openai` package from PyPI (tests/sdk/python/requirements.txt),
#     and pyflakes, which tests/run.sh runs on templates/runner.py;
#   - Node: `npm ci` in tests/sdk/node (the `openai` package from npm, pinned in package-lock.json).
# Idempotent and non-interactive; works as root on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
export DEBIAN_FRONTEND=noninteractive

apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "20-sdk.sh: need root to install $* (apt-get)" >&2
    exit 1
  fi
  if [ "$apt_updated" = 0 ]; then
    apt-get update -q
    apt_updated=1
  fi
  apt-get install -y -q --no-install-recommends "$@"
}

# Python with venv support.
if ! command -v python3 >/dev/null 2>&1; then
  apt_install python3 python3-venv
fi
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  apt_install python3-venv
fi

# Node and npm (any Node >= 20).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "20-sdk.sh: Node $node_major is too old; the SDK tests need Node 20 or newer" >&2
  exit 1
fi

# The Python SDK in target/venv.
venv=target/venv
req=tests/sdk/python/requirements.txt
stamp="$venv/.sandgate-requirements"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$req" "$stamp" \
  && "$venv/bin/python" -c 'import openai' >/dev/null 2>&1; then
  echo "20-sdk.sh: $venv already has $(cat "$req")"
else
  mkdir -p target
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
fi

# The Node SDK in tests/sdk/node/node_modules.
node_dir=tests/sdk/node
want=$(cd "$node_dir" && node -p 'require("./package-lock.json").packages["node_modules/openai"].version')
have=$(cd "$node_dir" && node -p 'try { require("./node_modules/openai/package.json").version } catch (e) { "" }')
if [ "$want" = "$have" ]; then
  echo "20-sdk.sh: $node_dir/node_modules has openai $have"
else
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "20-sdk.sh: openai SDKs ready"
