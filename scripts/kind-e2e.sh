#!/usr/bin/env bash
# The e2e suite on kind: bring the cluster up, run the target-parameterized
# integration tests against it for each flavor, and collect logs on failure.
#   FLAVORS (default "mysql mariadb"), KEEP_CLUSTER=1 to keep it afterwards,
#   ARTIFACTS (default artifacts/kind) for the logs of a failed run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=SCRIPTDIR/kind/lib.sh
source scripts/kind/lib.sh
need_tools docker kind kubectl python3
FLAVORS=${FLAVORS:-mysql mariadb}
ARTIFACTS=${ARTIFACTS:-artifacts/kind}

scripts/kind-up.sh
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'

collect_logs() {
  echo "collecting logs into $ARTIFACTS" >&2
  mkdir -p "$ARTIFACTS"
  kind export logs "$ARTIFACTS/nodes" --name "$KIND_CLUSTER" >/dev/null 2>&1 || true
  local ns pod
  for ns in $(kubectl --context "$KIND_CONTEXT" get ns -o name | sed 's|namespace/||' | grep '^mysqlsts-e2e' || true); do
    kubectl --context "$KIND_CONTEXT" -n "$ns" get all,pvc,events -o wide >"$ARTIFACTS/$ns-objects.txt" 2>&1 || true
    kubectl --context "$KIND_CONTEXT" -n "$ns" describe pods >"$ARTIFACTS/$ns-describe.txt" 2>&1 || true
    for pod in $(kubectl --context "$KIND_CONTEXT" -n "$ns" get pods -o name); do
      kubectl --context "$KIND_CONTEXT" -n "$ns" logs "$pod" --all-containers --prefix --timestamps \
        >"$ARTIFACTS/$ns-${pod#pod/}.log" 2>&1 || true
    done
  done
}

status=0
for flavor in $FLAVORS; do
  echo "=== e2e on kind, flavor $flavor" >&2
  MYSQLSTS_KIND=1 MYSQLSTS_KIND_CONTEXT=$KIND_CONTEXT MYSQLSTS_IMAGE=$MYSQLSTS_IMAGE MYSQLSTS_FLAVOR=$flavor \
    .venv/bin/pytest -v -m kind tests/test_e2e.py || status=$?
  if ((status != 0)); then
    collect_logs
    break
  fi
done
if [[ ${KEEP_CLUSTER:-0} != 1 ]]; then
  scripts/kind-down.sh
fi
exit "$status"
