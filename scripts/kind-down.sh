#!/usr/bin/env bash
# Delete the e2e kind cluster (KIND_CLUSTER, default mysqlsts) and its kubeconfig.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=SCRIPTDIR/kind/lib.sh
source scripts/kind/lib.sh
need_tools kind
kind delete cluster --name "$KIND_CLUSTER" --kubeconfig "$KIND_KUBECONFIG"
rm -f "$KIND_KUBECONFIG"
