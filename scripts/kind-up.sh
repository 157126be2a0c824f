#!/usr/bin/env bash
# Create (or reuse) the kind cluster for the e2e suite: 1 control plane + 3
# workers; build the mysqlsts image and load it into the nodes.
#   KIND_CLUSTER (default mysqlsts), MYSQLSTS_IMAGE (default mysqlsts/mysqlsts:e2e)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=SCRIPTDIR/kind/lib.sh
source scripts/kind/lib.sh
need_tools docker kind kubectl

if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  echo "kind cluster $KIND_CLUSTER exists; reusing it" >&2
else
  kind create cluster --name "$KIND_CLUSTER" --config scripts/kind/cluster.yaml --wait 180s
fi
docker build --provenance=false -t "$MYSQLSTS_IMAGE" .
# Through an archive: `kind load docker-image` fails with Docker's containerd image store.
archive=$(mktemp --suffix=.tar)
trap 'rm -f "$archive"' EXIT
docker save -o "$archive" "$MYSQLSTS_IMAGE"
kind load image-archive "$archive" --name "$KIND_CLUSTER"
kubectl --context "$KIND_CONTEXT" wait --for=condition=Ready nodes --all --timeout=180s
kubectl --context "$KIND_CONTEXT" get nodes -o wide
