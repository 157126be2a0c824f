#!/usr/bin/env bash
# Build, with no image registry, everything a kind cluster for the e2e suite
# runs: kind itself, a kind node image for $K8S_VERSION (kubelet, kubeadm,
# kubectl, containerd, runc, CNI plugins, and preloaded control-plane, etcd,
# CoreDNS, pause and local-path storage images), the MariaDB and MySQL images
# the chart runs and the mysqlsts image. Sources: the Go module proxy and
# Debian's packages (bookworm; sid for MySQL 9.7).
#
# `build-images.sh kind` builds only kind (for the stock-image path),
# `build-images.sh binaries` only the Go and C programs.
#
# Every artifact is cached outside the repository ($KIND_CACHE, and Docker's
# image store), keyed by its versions and by this recipe: a warm run reuses
# them and builds nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=SCRIPTDIR/lib.sh
source scripts/kind/lib.sh
scripts/apt-install.sh debootstrap jq gcc libc6-dev
need_tools go docker

# The recipe's fingerprint: change this script, and the images are rebuilt.
RECIPE=$(cat scripts/kind/build-images.sh scripts/kind/lib.sh scripts/kind/node/* | sha256sum | cut -c1-12)
NODE_IMAGE=mysqlsts-kind/node:$K8S_VERSION-$RECIPE
KIND_MODULE_DIR=

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# go_build MODULE VERSION PACKAGE OUTPUT [LDFLAGS] [GO.MOD LINES...]: build
# one main package of a module through a small module of our own, so that the
# module's own replace lines (etcd has them) do not stop the build.
go_build() {
  local module=$1 version=$2 pkg=$3 out=$4 ldflags=${5:-} dir
  shift 5 || shift $#
  [[ -x $out ]] && return 0
  dir=$KIND_CACHE/src/$(basename "$out")-$version
  mkdir -p "$dir" "$(dirname "$out")"
  {
    echo "module mysqlsts.local/build"
    echo "go 1.24.0"
    echo "require $module $version"
    printf '%s\n' "$@"
  } >"$dir/go.mod"
  printf '//go:build tools\n\npackage build\n\nimport _ "%s"\n' "$pkg" >"$dir/tools.go"
  log "go build $pkg@$version"
  (cd "$dir" && go mod tidy && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
}

build_kind() {
  go_build sigs.k8s.io/kind "$KIND_VERSION" sigs.k8s.io/kind "$KIND_BIN/kind-$KIND_VERSION"
  ln -sf "kind-$KIND_VERSION" "$KIND_BIN/kind"
  KIND_MODULE_DIR=$(go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | jq -r .Dir)
}

# Kubernetes' commands come from k8s.io/kubernetes with its staging modules
# (k8s.io/api, client-go, ...) pinned at the matching v0.x.y, and the version
# stamped the way the release build stamps it (kubeadm checks it).
build_kubernetes() {
  local out=$KIND_CACHE/k8s/$K8S_VERSION dir=$KIND_CACHE/src/kubernetes-$K8S_VERSION minor staging ld pkg cmd gomod
  local cmds=(kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy)
  minor=${K8S_VERSION#v1.}
  staging=v0.$minor
  minor=${minor%%.*}
  ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  mkdir -p "$dir" "$out"
  if [[ ! -f $dir/go.sum ]]; then
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | jq -r .GoMod)
    {
      echo "module mysqlsts.local/build"
      echo "go 1.24.0"
      echo "require k8s.io/kubernetes $K8S_VERSION"
      grep -oE '^\s*k8s.io/[a-z0-9-]+ => ./staging' "$gomod" | awk -v v="$staging" '{print "replace " $1 " => " $1 " " v}'
    } >"$dir/go.mod"
    {
      printf '//go:build tools\n\npackage build\n\nimport (\n'
      printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "${cmds[@]}"
      printf ')\n'
    } >"$dir/tools.go"
    (cd "$dir" && go mod tidy)
  fi
  for cmd in "${cmds[@]}"; do
    [[ -x $out/$cmd ]] && continue
    log "go build k8s.io/kubernetes/cmd/$cmd@$K8S_VERSION"
    (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ld" -o "$out/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
    mv "$out/$cmd.tmp" "$out/$cmd"
  done
}

# CoreDNS with only the plugins a kubeadm cluster's Corefile uses (package
# metrics is its "prometheus" directive): the stock build links every cloud
# provider's SDK and takes far longer.
build_coredns() {
  local out=$1 dir=$KIND_CACHE/src/coredns-$COREDNS_VERSION plugin
  [[ -x $out ]] && return 0
  mkdir -p "$dir"
  printf 'module mysqlsts.local/coredns\n\ngo 1.24.0\n\nrequire github.com/coredns/coredns %s\n' \
    "$COREDNS_VERSION" >"$dir/go.mod"
  {
    printf 'package main\n\nimport (\n\t"github.com/coredns/coredns/coremain"\n'
    for plugin in cache errors forward health kubernetes loadbalance log loop metrics ready reload; do
      printf '\t_ "github.com/coredns/coredns/plugin/%s"\n' "$plugin"
    done
    printf ')\n\nfunc main() { coremain.Run() }\n'
  } >"$dir/main.go"
  log "go build coredns@$COREDNS_VERSION (kubeadm's plugins)"
  (cd "$dir" && go mod tidy && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out.tmp" .)
  mv "$out.tmp" "$out"
}

build_others() {
  local out=$KIND_CACHE/bin-images
  go_build go.etcd.io/etcd/server/v3 "v$ETCD_VERSION" go.etcd.io/etcd/server/v3 "$out/etcd-$ETCD_VERSION"
  build_coredns "$out/coredns-$COREDNS_VERSION"
  go_build github.com/rancher/local-path-provisioner "$LOCAL_PATH_VERSION" github.com/rancher/local-path-provisioner \
    "$out/local-path-provisioner-$LOCAL_PATH_VERSION"
  if [[ ! -x $out/pause-$PAUSE_VERSION ]]; then
    local src
    src=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | jq -r .Dir)/build/pause/linux/pause.c
    gcc -Os -static -DVERSION="v$PAUSE_VERSION-mysqlsts" -o "$out/pause-$PAUSE_VERSION" "$src"
    strip "$out/pause-$PAUSE_VERSION"
  fi
}

# rootfs_image NAME PACKAGES: a Debian rootfs made by debootstrap, imported as
# mysqlsts-kind/NAME:<hash of suite and packages>; prints the image name.
rootfs_image() {
  local name=$1 packages=$2 image dir
  image=mysqlsts-kind/$name:$(echo "$DEBIAN_SUITE $packages" | sha256sum | cut -c1-12)
  if ! have_image "$image"; then
    dir=$KIND_CACHE/rootfs/$name
    rm -rf "$dir"
    mkdir -p "$dir"
    log "debootstrap $name: $packages"
    debootstrap --variant=minbase --include="$packages" "$DEBIAN_SUITE" "$dir" http://deb.debian.org/debian \
      >"$KIND_CACHE/rootfs/$name.log" 2>&1 || {
      tail -n 20 "$KIND_CACHE/rootfs/$name.log" >&2
      exit 1
    }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    tar -C "$dir" -c . | docker import - "$image" >/dev/null
    rm -rf "$dir"
  fi
  echo "$image"
}

# image TAG DIR: docker build with the Dockerfile on stdin, DIR as context.
# Rebuilt when the Dockerfile or the context's files change, though the tag
# stays (kubeadm asks for the control-plane images by their release names).
image() {
  local tag=$1 dir=$2 dockerfile key
  dockerfile=$(cat)
  key=$( (echo "$dockerfile" && find "$dir" -maxdepth 1 -type f -exec sha256sum {} + | sort) | sha256sum | cut -c1-16)
  [[ $(docker image inspect -f '{{index .Config.Labels "mysqlsts.recipe"}}' "$tag" 2>/dev/null) == "$key" ]] && return 0
  log "docker build $tag"
  docker build -q --label "mysqlsts.recipe=$key" -t "$tag" -f - "$dir" <<<"$dockerfile" >/dev/null
}

context_with() { # context_with NAME FILE...: a build context holding FILEs
  local dir=$KIND_CACHE/context/$1
  shift
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$@" "$dir/"
  echo "$dir"
}

APPS_PACKAGES=iptables,conntrack,ipset,mariadb-server,mariadb-backup,socat,python3,python3-venv,procps,ca-certificates
NODE_PACKAGES=systemd,systemd-sysv,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod
NODE_PACKAGES+=,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,containerd,runc,containernetworking-plugins

component_images() {
  local apps=$1 bin=$KIND_CACHE/k8s/$K8S_VERSION imgs=$KIND_CACHE/bin-images cmd ctx
  for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
    ctx=$(context_with "$cmd" "$bin/$cmd")
    image "registry.k8s.io/$cmd:$K8S_VERSION" "$ctx" <<EOF
FROM scratch
ENV PATH=/usr/local/bin:/usr/bin:/bin
COPY $cmd /usr/local/bin/$cmd
EOF
  done
  ctx=$(context_with kube-proxy "$bin/kube-proxy")
  image "registry.k8s.io/kube-proxy:$K8S_VERSION" "$ctx" <<EOF
FROM $apps
COPY kube-proxy /usr/local/bin/kube-proxy
EOF
  ctx=$(context_with etcd "$imgs/etcd-$ETCD_VERSION")
  image "registry.k8s.io/etcd:$ETCD_VERSION-0" "$ctx" <<EOF
FROM scratch
ENV PATH=/usr/local/bin:/usr/bin:/bin
COPY etcd-$ETCD_VERSION /usr/local/bin/etcd
EOF
  ctx=$(context_with coredns "$imgs/coredns-$COREDNS_VERSION")
  image "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" "$ctx" <<EOF
FROM scratch
COPY coredns-$COREDNS_VERSION /coredns
ENTRYPOINT ["/coredns"]
EOF
  ctx=$(context_with pause "$imgs/pause-$PAUSE_VERSION")
  image "registry.k8s.io/pause:$PAUSE_VERSION" "$ctx" <<EOF
FROM scratch
COPY pause-$PAUSE_VERSION /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
EOF
  ctx=$(context_with local-path "$imgs/local-path-provisioner-$LOCAL_PATH_VERSION")
  image "$STORAGE_PROVISIONER_IMAGE" "$ctx" <<EOF
FROM $apps
COPY local-path-provisioner-$LOCAL_PATH_VERSION /usr/local/bin/local-path-provisioner
EOF
  have_image "$STORAGE_HELPER_IMAGE" || docker tag "$apps" "$STORAGE_HELPER_IMAGE"
}

PRELOADED=()
node_image() {
  local rootfs=$1 ctx box
  have_image "$NODE_IMAGE" && return 0
  ctx=$KIND_CACHE/context/node
  rm -rf "$ctx"
  mkdir -p "$ctx/bin"
  cp -r "$KIND_MODULE_DIR/images/base/files" "$ctx/files"
  chmod -R u+w "$ctx/files"
  cp "$KIND_CACHE/k8s/$K8S_VERSION"/{kubeadm,kubelet,kubectl} "$ctx/bin/"
  cp scripts/kind/node/* "$ctx/"
  # kind's own storage manifest (local-path-provisioner), as its node-image build writes it.
  awk '/^const defaultStorageManifest = `/ {f = 1; next} f && /^`/ {exit} f' \
    "$KIND_MODULE_DIR/pkg/build/nodeimage/const_storage.go" |
    sed "s#\` + storageProvisionerImage + \`#$STORAGE_PROVISIONER_IMAGE#; s#\` + storageHelperImage + \`#$STORAGE_HELPER_IMAGE#" \
      >"$ctx/default-storage.yaml"
  grep -q "image: $STORAGE_PROVISIONER_IMAGE" "$ctx/default-storage.yaml"
  image "$NODE_IMAGE-base" "$ctx" <<EOF
FROM $rootfs
COPY files/usr/local/bin/ /usr/local/bin/
COPY files/kind/ /kind/
COPY files/etc/ /etc/
COPY bin/ /usr/bin/
COPY 10-mysqlsts.conflist /etc/cni/net.d/
COPY default-storage.yaml /kind/manifests/
RUN chmod 0755 /usr/local/bin/* /kind/bin/* \
 && for b in containerd ctr containerd-shim-runc-v2; do ln -sf /usr/bin/\$b /usr/local/bin/\$b; done \
 && mkdir -p /opt/cni && ln -sfn /usr/lib/cni /opt/cni/bin \
 && find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete \
 && rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
    /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
    /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/* \
 && echo ReadKMsg=no >>/etc/systemd/journald.conf \
 && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \
 && systemctl mask systemd-binfmt.service \
 && mkdir -p /etc/kubernetes/manifests \
 && ctr oci spec \
    | jq '.hooks.createContainer[.hooks.createContainer|length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
    | jq 'del(.process.rlimits)' >/etc/containerd/cri-base.json \
 && sed -i 's#registry.k8s.io/pause:[0-9.]*"#registry.k8s.io/pause:$PAUSE_VERSION"#' /etc/containerd/config.toml \
 && grep -q 'pause:$PAUSE_VERSION"' /etc/containerd/config.toml \
 && sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' /etc/containerd/config.toml \
 && echo $K8S_VERSION >/kind/version
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
EOF
  # restrict_oom_score_adj: lowering a process's oom_score_adj (kubelet asks -998 for
  # critical pods) needs CAP_SYS_RESOURCE, which some hosts cannot grant.
  # Preload the images as kind's own node-image build does: containerd in a
  # plain container, `ctr import`, then commit.
  box=mysqlsts-kind-build-$$
  docker rm -f "$box" >/dev/null 2>&1 || true
  docker run -d --name "$box" --entrypoint sleep --security-opt seccomp=unconfined "$NODE_IMAGE-base" infinity >/dev/null
  # shellcheck disable=SC2064 # the name is fixed now
  trap "docker rm -f $box >/dev/null 2>&1 || true" EXIT
  docker exec "$box" bash -c 'nohup containerd >/dev/null 2>&1 &'
  docker exec "$box" bash -c 'for i in $(seq 30); do [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1 && exit 0; sleep 1; done; exit 1'
  log "preloading ${#PRELOADED[@]} images into the node image"
  docker save "${PRELOADED[@]}" | docker exec -i "$box" ctr --namespace=k8s.io images import \
    --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - >/dev/null
  docker exec "$box" pkill containerd
  docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' "$box" "$NODE_IMAGE" >/dev/null
  docker rm -f "$box" >/dev/null
  docker rmi "$NODE_IMAGE-base" >/dev/null
  # Older recipes of this version's node image are dead weight (about 1 GB each).
  docker images --format '{{.Repository}}:{{.Tag}}' "mysqlsts-kind/node" | grep "^mysqlsts-kind/node:$K8S_VERSION-" |
    grep -vx "$NODE_IMAGE" | xargs -r docker rmi >/dev/null || true
}

# The database image for the MariaDB flavor: Debian's MariaDB 10.11 and
# mariabackup, running as uid/gid 999 like the stock image.
mariadb_image() {
  local apps=$1
  mkdir -p "$KIND_CACHE/context/empty"
  image "$MARIADB_BUILT_IMAGE" "$KIND_CACHE/context/empty" <<EOF
FROM $apps
RUN groupmod -g 999 mysql && usermod -u 999 -g 999 mysql \
 && mkdir -p /run/mysqld && chown 999:999 /run/mysqld /var/lib/mysql
USER 999:999
EOF
}

# The database image for the MySQL flavor: Debian sid's MySQL 9.7, the root
# filesystem scripts/mysql-rootfs.sh builds for the local runtime, imported as it
# is (its mysql account is uid/gid 999, like the stock image's).
mysql_image() {
  local rootfs
  have_image "$MYSQL_BUILT_IMAGE" && return 0
  rootfs=$(MYSQL_DEBIAN_VERSION=$MYSQL_DEBIAN_VERSION scripts/mysql-rootfs.sh)
  tar -C "$rootfs" --exclude=./.mysqlsts-complete -c . |
    docker import --change 'USER 999:999' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      - "$MYSQL_BUILT_IMAGE" >/dev/null
}

main() {
  local apps node pids=()
  mkdir -p "$KIND_CACHE" "$KIND_BIN"
  timed "kind $KIND_VERSION" build_kind
  [[ ${1:-} != kind ]] || return 0
  [[ ${1:-} != binaries ]] || { build_kubernetes; build_others; return 0; }
  # The debootstraps wait on the network and dpkg, the Go builds on the CPU: side by side.
  timed "debian apps rootfs" rootfs_image rootfs-apps "$APPS_PACKAGES" >"$KIND_CACHE/apps-image" &
  pids+=($!)
  timed "debian node rootfs" rootfs_image rootfs-node "$NODE_PACKAGES" >"$KIND_CACHE/node-rootfs-image" &
  pids+=($!)
  timed "kubernetes $K8S_VERSION" build_kubernetes
  timed "etcd, coredns, pause, local-path" build_others
  for pid in "${pids[@]}"; do
    wait "$pid"
  done
  apps=$(cat "$KIND_CACHE/apps-image")
  node=$(cat "$KIND_CACHE/node-rootfs-image")
  timed "component images" component_images "$apps"
  PRELOADED=("registry.k8s.io/kube-apiserver:$K8S_VERSION" "registry.k8s.io/kube-controller-manager:$K8S_VERSION"
    "registry.k8s.io/kube-scheduler:$K8S_VERSION" "registry.k8s.io/kube-proxy:$K8S_VERSION"
    "registry.k8s.io/etcd:$ETCD_VERSION-0" "registry.k8s.io/coredns/coredns:$COREDNS_VERSION"
    "registry.k8s.io/pause:$PAUSE_VERSION" "$STORAGE_PROVISIONER_IMAGE" "$STORAGE_HELPER_IMAGE")
  timed "node image" node_image "$node"
  timed "mariadb image" mariadb_image "$apps"
  timed "mysql image" mysql_image
  timed "mysqlsts image" scripts/kind/build-tools-image.sh "$apps"
  echo "$NODE_IMAGE"
}

main "$@"
