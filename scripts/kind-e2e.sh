#!/usr/bin/env bash
# The e2e suite on kind: bring the cluster up (scripts/kind-up.sh), run the
# target-parameterized integration tests against it for each flavor, collect
# logs on failure, and delete the cluster whatever happened.
#   FLAVORS (default "mysql mariadb"), KEEP_CLUSTER=1 to keep the cluster
#   afterwards, ARTIFACTS (default artifacts/kind) for logs.
#   MYSQL_SCENARIOS: a pytest -k expression choosing the scenarios MySQL runs
#   (default: bootstrap, switchover, the controller's failover on a killed
#   server, drill --fault kill, destroy; "all" for every one). MariaDB runs all.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=SCRIPTDIR/kind/lib.sh
source scripts/kind/lib.sh
ARTIFACTS=${ARTIFACTS:-artifacts/kind}

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  if [[ ${KEEP_CLUSTER:-0} != 1 ]]; then
    scripts/kind-down.sh || true
  fi
}
trap cleanup EXIT

env_file=$(mktemp)
scripts/kind-up.sh >"$env_file"
# shellcheck disable=SC1090 # written by kind-up.sh just now
source "$env_file"
rm -f "$env_file"
FLAVORS=${FLAVORS:-mysql mariadb}
MYSQL_SCENARIOS=${MYSQL_SCENARIOS:-bootstrap_three or test_switchover or server-killed or kind-kill or destroy}
if [[ ! -x .venv/bin/python ]]; then
  scripts/install-deps.sh >/dev/null
fi

collect_logs() {
  log "collecting logs into $ARTIFACTS"
  mkdir -p "$ARTIFACTS"
  kind export logs "$ARTIFACTS/nodes" --name "$KIND_CLUSTER" >/dev/null 2>&1 || true
  local ns pod k=(kubectl --context "$KIND_CONTEXT")
  for ns in $("${k[@]}" get ns -o name | sed 's|namespace/||' | grep '^mysqlsts-e2e' || true); do
    "${k[@]}" -n "$ns" get all,pvc,events -o wide >"$ARTIFACTS/$ns-objects.txt" 2>&1 || true
    "${k[@]}" -n "$ns" describe pods >"$ARTIFACTS/$ns-describe.txt" 2>&1 || true
    for pod in $("${k[@]}" -n "$ns" get pods -o name); do
      "${k[@]}" -n "$ns" logs "$pod" --all-containers --prefix --timestamps \
        >"$ARTIFACTS/$ns-${pod#pod/}.log" 2>&1 || true
    done
  done
}

figures=$ARTIFACTS/figures.jsonl
mkdir -p "$ARTIFACTS"
rm -f "$figures"
status=0
for flavor in $FLAVORS; do
  log "e2e on kind, flavor $flavor"
  start=$SECONDS
  only=()
  [[ $flavor != mysql || $MYSQL_SCENARIOS == all ]] || only=(-k "$MYSQL_SCENARIOS")
  MYSQLSTS_E2E_FIGURES=$figures MYSQLSTS_KIND=1 MYSQLSTS_KIND_CONTEXT=$KIND_CONTEXT MYSQLSTS_IMAGE=$MYSQLSTS_IMAGE MYSQLSTS_FLAVOR=$flavor \
    .venv/bin/pytest -q --durations=0 -m kind tests/test_e2e.py "${only[@]}" "$@" || status=$?
  log "step 'e2e suite ($flavor)' took $((SECONDS - start)) s"
  if ((status != 0)); then
    collect_logs
    break
  fi
done
if [[ -s $figures ]]; then
  log "figures measured on kind ($figures):"
  jq -r '"  \(.flavor): \(.figure): \(.value)"' "$figures" >&2
fi
exit "$status"
