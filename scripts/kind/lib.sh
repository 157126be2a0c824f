# shellcheck shell=bash
# Shared by the kind scripts: names, pinned versions, the build cache, and the
# checks for the tools they need.
# shellcheck disable=SC2034 # used by the scripts that source this file
KIND_CLUSTER=${KIND_CLUSTER:-mysqlsts}
KIND_CONTEXT=kind-$KIND_CLUSTER
MYSQLSTS_IMAGE=${MYSQLSTS_IMAGE:-mysqlsts/mysqlsts:e2e}

# Pinned versions. The Kubernetes version fixes the control-plane images that
# kubeadm asks for (cmd/kubeadm/app/constants of that version): etcd, CoreDNS
# and pause move with it. The storage images are the names kind's own
# default-storage manifest (pkg/build/nodeimage/const_storage.go) refers to.
KIND_VERSION=v0.30.0
K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=3.6.5           # image tag 3.6.5-0
COREDNS_VERSION=v1.12.1
PAUSE_VERSION=3.10.1
LOCAL_PATH_VERSION=v0.0.30   # github.com/rancher/local-path-provisioner
DEBIAN_SUITE=bookworm
KIND_STOCK_NODE_IMAGE=kindest/node:v1.34.0
STORAGE_PROVISIONER_IMAGE=docker.io/kindest/local-path-provisioner:v20250214-acbabc1a
STORAGE_HELPER_IMAGE=docker.io/kindest/local-path-helper:v20241212-8ac705d0
# The chart's default images (charts/mysql-sts/values.yaml), preloaded on the stock path.
STOCK_SERVER_IMAGES=(mariadb:10.11.15 mysql:9.7.4 percona/percona-xtrabackup:8.4.0-5)
MARIADB_BUILT_IMAGE=mysqlsts-kind/mariadb:10.11-$DEBIAN_SUITE
# MySQL 9.7 from Debian sid: the very root filesystem the local runtime runs (scripts/mysql-rootfs.sh).
MYSQL_DEBIAN_VERSION=${MYSQL_DEBIAN_VERSION:-9.7.4-2}
MYSQL_BUILT_IMAGE=mysqlsts-kind/mysql:$MYSQL_DEBIAN_VERSION-sid

# Built artifacts live outside the repository, keyed by their versions.
KIND_CACHE=${MYSQLSTS_KIND_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mysqlsts/kind}
KIND_BIN=$KIND_CACHE/bin
# The cluster's kubeconfig is kept here, not merged into ~/.kube/config.
KIND_KUBECONFIG=${KIND_KUBECONFIG:-$KIND_CACHE/kubeconfig}
# A Docker network of our own whose bridge forwards nothing beyond this machine.
KIND_NETWORK=${KIND_NETWORK:-mysqlsts-kind}
KIND_BRIDGE=mysqlsts-kind0
# kind and, on the built path, the kubectl of the cluster's own version.
export PATH="$KIND_BIN:$KIND_CACHE/k8s/$K8S_VERSION:/usr/local/go/bin:$PATH"

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }

# Run a step and print how long it took: docs/kind.md quotes these lines.
timed() {
  local label=$1 start=$SECONDS
  shift
  "$@"
  log "step '$label' took $((SECONDS - start)) s"
}

need_tools() {
  local missing=() tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  if ((${#missing[@]})); then
    echo "${0##*/}: missing: ${missing[*]} (scripts/kind-up.sh installs and builds them)" >&2
    exit 1
  fi
}

# Which images the cluster runs: "stock" pulls kind's node image and the
# database images from their registries (GitHub Actions); "built" makes every
# one here from Debian packages and the Go module proxy. "auto" picks stock on
# GitHub Actions or when the stock node image is already in Docker, else built:
# it never probes a registry to find out.
kind_images_mode() {
  case ${KIND_IMAGES:-auto} in
    stock | built) echo "$KIND_IMAGES" ;;
    auto)
      if [[ ${GITHUB_ACTIONS:-} == true ]] || docker image inspect "$KIND_STOCK_NODE_IMAGE" >/dev/null 2>&1; then
        echo stock
      else
        echo built
      fi
      ;;
    *) echo "${0##*/}: KIND_IMAGES must be auto, stock or built, not '$KIND_IMAGES'" >&2; exit 2 ;;
  esac
}
