# shellcheck shell=bash
# Shared by the kind scripts: names, and a check for the tools they need.
# shellcheck disable=SC2034 # used by the scripts that source this file
KIND_CLUSTER=${KIND_CLUSTER:-mysqlsts}
KIND_CONTEXT=kind-$KIND_CLUSTER
MYSQLSTS_IMAGE=${MYSQLSTS_IMAGE:-mysqlsts/mysqlsts:e2e}

need_tools() {
  local missing=() tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    {
      echo "${0##*/}: missing: ${missing[*]}"
      echo "  docker:  https://docs.docker.com/engine/install/"
      echo "  kind:    https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
      echo "  kubectl: https://kubernetes.io/docs/tasks/tools/"
    } >&2
    exit 1
  fi
  if [[ " $* " == *" docker "* ]] && ! docker info >/dev/null 2>&1; then
    echo "${0##*/}: docker is installed but its daemon does not answer (is it running, may this user use it?)" >&2
    exit 1
  fi
}
