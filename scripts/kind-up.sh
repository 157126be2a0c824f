#!/usr/bin/env bash
# Create (or reuse) the kind cluster for the e2e suite and load the images the
# chart runs into it.
#
# Two paths (KIND_IMAGES, see scripts/kind/lib.sh):
#   stock: kind's node image and the stock database images, pulled by Docker.
#   built: no registry needed; kind, the node image and the MariaDB and MySQL
#          images are built from the Go module proxy and Debian
#          (scripts/kind/build-images.sh, cached), the cluster's Docker network
#          forwards nothing off the machine, and neither does CoreDNS.
# Either way the mysqlsts image is built from the Dockerfile and every image is
# preloaded into the node: the suite's pods never pull.
#
# Prints `export KUBECONFIG=...` and the --set values for the e2e suite last.
#   KIND_CLUSTER (default mysqlsts), MYSQLSTS_IMAGE (default mysqlsts/mysqlsts:e2e)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=SCRIPTDIR/kind/lib.sh
source scripts/kind/lib.sh

timed "docker engine" scripts/kind/ensure-docker.sh
mode=$(kind_images_mode)
log "kind images: $mode"
node_image=
if [[ $mode == built ]]; then
  node_image=$(scripts/kind/build-images.sh | tail -n 1)
  base_image=$(cat "$KIND_CACHE/apps-image")
  server_images=("$MARIADB_BUILT_IMAGE" "$MYSQL_BUILT_IMAGE")
  image_sets="images.mariadb.server=$MARIADB_BUILT_IMAGE images.mariadb.backup=$MARIADB_BUILT_IMAGE"
  image_sets+=" images.mysql.server=$MYSQL_BUILT_IMAGE"
else
  command -v kind >/dev/null 2>&1 || scripts/kind/build-images.sh kind >/dev/null
  node_image=$KIND_STOCK_NODE_IMAGE
  base_image=debian:bookworm-slim
  server_images=("${STOCK_SERVER_IMAGES[@]}") # the chart's defaults: no --set needed
  image_sets=
  for image in "${server_images[@]}"; do
    docker pull -q "$image" >/dev/null
  done
fi
need_tools kind

timed "mysqlsts image" scripts/kind/build-tools-image.sh "$base_image"

# The built path's cluster network reaches nothing beyond this machine: no
# masquerading, and forwarding out of its bridge dropped (what --internal does,
# but --internal would also stop Docker publishing the API server's port).
isolate_network() {
  docker network inspect "$KIND_NETWORK" >/dev/null 2>&1 ||
    docker network create -o "com.docker.network.bridge.name=$KIND_BRIDGE" \
      -o com.docker.network.bridge.enable_ip_masquerade=false "$KIND_NETWORK" >/dev/null
  local rule=(DOCKER-USER -i "$KIND_BRIDGE" ! -o "$KIND_BRIDGE" -j DROP)
  iptables -C "${rule[@]}" 2>/dev/null || iptables -I "${rule[@]}"
}

create_cluster() {
  local config=$KIND_CACHE/cluster-$KIND_CLUSTER.yaml
  sed "s|@NODE_IMAGE@|$node_image|; s|@DEFAULT_CNI@|$([[ $mode == built ]] && echo true || echo false)|" \
    scripts/kind/cluster.yaml >"$config"
  [[ $mode != built ]] || isolate_network
  KIND_EXPERIMENTAL_DOCKER_NETWORK=$([[ $mode == built ]] && echo "$KIND_NETWORK" || echo kind) \
    kind create cluster --name "$KIND_CLUSTER" --config "$config" --kubeconfig "$KIND_KUBECONFIG" --wait 0s
}

if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  log "kind cluster $KIND_CLUSTER exists; reusing it"
else
  timed "kind create cluster" create_cluster
fi

node=$KIND_CLUSTER-control-plane
export KUBECONFIG=$KIND_KUBECONFIG
kubectl=(kubectl --context "$KIND_CONTEXT")

load_images() {
  docker save "$MYSQLSTS_IMAGE" "${server_images[@]}" |
    docker exec -i "$node" ctr --namespace=k8s.io images import --all-platforms --digests - >/dev/null
}
timed "load images into the node" load_images

if [[ $mode == built ]]; then
  # Nothing answers beyond the cluster: CoreDNS answers for cluster.local and
  # refuses the rest at once, instead of waiting on an upstream it cannot reach.
  "${kubectl[@]}" -n kube-system create configmap coredns --dry-run=client -o yaml \
    --from-file=Corefile=scripts/kind/Corefile | "${kubectl[@]}" apply -f - >/dev/null
  "${kubectl[@]}" -n kube-system rollout restart deployment coredns >/dev/null
fi

wait_ready() {
  "${kubectl[@]}" wait --for=condition=Ready nodes --all --timeout=300s >/dev/null
  "${kubectl[@]}" -n kube-system rollout status deployment coredns --timeout=300s >/dev/null
  "${kubectl[@]}" -n local-path-storage rollout status deployment local-path-provisioner --timeout=300s >/dev/null
}
timed "cluster ready" wait_ready
"${kubectl[@]}" get nodes -o wide >&2

echo "export KUBECONFIG=$KIND_KUBECONFIG"
# Small CPU and memory requests: five database pods, the controller and the
# in-cluster Jobs share one node with the control plane.
echo "export MYSQLSTS_KIND_SETS='images.tools=$MYSQLSTS_IMAGE $image_sets images.pullPolicy=Never" \
  "pod.resources.server.requests.cpu=50m pod.resources.server.requests.memory=256Mi" \
  "pod.resources.agent.requests.cpu=10m pod.resources.clone.requests.cpu=10m'"
