#!/usr/bin/env bash
# A real node (kubelet + containerd + runc) joined to the control plane of tools/cluster.sh, all on
# loopback: pods run real containers from images built locally (tools/node/images.sh), never pulled
# from a public registry. docs/real-control-plane.md, "The real node".
#
#   tools/node.sh up            build/reuse binaries (tools/build-node.sh) and images, start containerd and
#                               kubelet, wait until node kpo-real-node is Ready (control plane must be up)
#   tools/node.sh down          stop kubelet and containerd (pods' containers too), unmount, delete the
#                               node object, remove the node's state and the cgroups kubelet made
#   tools/node.sh status        exit 0 only if both run and the node is Ready
#   tools/node.sh target real|kwok
#                               where new pods go: `real` taints the kwok node and lifts the real node's
#                               taint; `kwok` (the state after `up`) does the reverse, so the kwok e2e
#                               suite is unchanged while the real node is up
#   tools/node.sh logs [N]      tail of the kubelet, containerd and registry logs
#   tools/node.sh alias NAME... make the local shell image answer to more names (e.g. the official XCom
#                               sidecar's pinned alpine tag), on a running node
#
# The registry at $KPO_ASYNC_REGISTRY_PORT (127.0.0.1:30500) serves kpo-async/shell:1 (the shell image);
# containerd pulls from it over plain HTTP. Every other registry name resolves to a closed loopback port.
#
# State: $KPO_ASYNC_CLUSTER_DIR/node (default /tmp/kpo-async-cluster/node).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="${KPO_ASYNC_CLUSTER_DIR:-/tmp/kpo-async-cluster}"
N="$DIR/node"
HOST=127.0.0.1
KUBELET_PORT="${KPO_ASYNC_KUBELET_PORT:-30251}"
KUBELET_HEALTHZ_PORT="${KPO_ASYNC_KUBELET_HEALTHZ_PORT:-30248}"
# The project's own registry (distribution, plain HTTP on loopback): real pulls and real pull failures.
REGISTRY="$HOST:${KPO_ASYNC_REGISTRY_PORT:-30500}"
# A closed loopback port: every registry without its own certs.d entry resolves here, so no pull can
# leave the machine (it fails with "connection refused").
NOWHERE="${KPO_ASYNC_NOWHERE_REGISTRY:-127.0.0.1:9}"
WAIT_SECONDS="${KPO_ASYNC_NODE_WAIT:-120}"
NODE=kpo-real-node
KWOK_NODE=kwok-node-0
REAL_TAINT=kpo-async.io/real-node
KWOK_TAINT=kpo-async.io/kwok-node
PAUSE_IMAGE=kpo-async.local/pause:1
# Local stand-ins (tools/node/images.sh): image tar -> names it is imported under.
SHELL_NAMES=(docker.io/library/alpine:3.20 docker.io/library/ubuntu:24.04 docker.io/library/busybox:1.36
  kpo-async.local/shell:1)
PYTHON_NAMES=(docker.io/library/python:3.12-slim kpo-async.local/python:1)
COMPONENTS=(registry containerd kubelet)

say() { echo "node.sh: $*" >&2; }
die() {
  {
    echo
    echo "############################################################################"
    echo "# tools/node.sh FAILED: $*"
    echo "############################################################################"
  } >&2
  exit 1
}

pidfile() { echo "$N/pids/$1.pid"; }
alive() {
  local state
  state="$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)"
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}
is_ours() {
  local f pid
  f="$(pidfile "$1")"
  [ -s "$f" ] || return 1
  read -r pid _ <"$f" || return 1
  [ -n "$pid" ] && alive "$pid" || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$N/"
}
start() {
  local name="$1"
  shift
  setsid "$@" >"$N/logs/$name.log" 2>&1 </dev/null &
  echo "$! $name" >"$(pidfile "$name")"
  sleep 0.3
  is_ours "$name" || {
    tail -n 30 "$N/logs/$name.log" >&2
    die "$name exited right after start"
  }
}
stop_one() {
  local name="$1" pid
  if is_ours "$name"; then
    read -r pid _ <"$(pidfile "$name")"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      alive "$pid" || break
      sleep 0.1
    done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
    say "stopped $name ($pid)"
  fi
  rm -f "$(pidfile "$name")"
}
wait_for() { # wait_for NAME WHAT CMD...
  local name="$1" what="$2" deadline=$((SECONDS + WAIT_SECONDS))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ "$name" != - ] && ! is_ours "$name"; then
      tail -n 40 "$N/logs/$name.log" >&2
      die "$name died while waiting for $what"
    fi
    if [ $SECONDS -ge $deadline ]; then
      [ "$name" != - ] && tail -n 40 "$N/logs/$name.log" >&2
      die "timed out after ${WAIT_SECONDS}s waiting for $what"
    fi
    sleep 0.5
  done
}

cluster_env() {
  [ -s "$DIR/cluster.env" ] || die "no control plane in $DIR: run tools/cluster.sh up (make cluster-up) first"
  BIN_DIR="$(sed -n 's/^KPO_ASYNC_BIN_DIR=//p' "$DIR/cluster.env")"
  APISERVER="$(sed -n 's/^KPO_ASYNC_APISERVER=//p' "$DIR/cluster.env")"
  NAMESPACE="$(sed -n 's/^KPO_ASYNC_NAMESPACE=//p' "$DIR/cluster.env")"
  K="$BIN_DIR/kubectl --kubeconfig=$DIR/admin.kubeconfig"
}

ctr_() { "$NBIN/ctr" --address "$N/containerd/containerd.sock" -n k8s.io "$@"; }

node_ready() {
  [ "$($K get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
node_untainted() {
  local keys
  keys="$($K get node "$NODE" -o jsonpath='{.spec.taints[*].key}')" || return 1
  case " $keys " in *" node.kubernetes.io/not-ready "*) return 1 ;; esac
}

# ---------------------------------------------------------------------------------------------------
gen_node_pki() {
  local p="$N/pki"
  mkdir -p "$p"
  (
    cd "$p"
    umask 077
    cert() { # cert NAME SUBJECT EXT
      openssl ecparam -name prime256v1 -genkey -noout -out "$1.key" 2>/dev/null
      openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA "$DIR/pki/ca.crt" -CAkey "$DIR/pki/ca.key" -CAcreateserial \
        -CAserial "$p/ca.srl" -days 30 -sha256 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    # The kubelet's identity for the Node authorizer, and its serving certificate (the API server
    # verifies it with --kubelet-certificate-authority when it proxies logs and exec).
    cert kubelet-client "/O=system:nodes/CN=system:node:$NODE" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    cert kubelet-serving "/O=system:nodes/CN=system:node:$NODE" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:$NODE"
  )
  cat >"$N/kubelet.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kpo-async-e2e
  cluster:
    server: $APISERVER
    certificate-authority: $DIR/pki/ca.crt
users:
- name: kubelet
  user:
    client-certificate: $p/kubelet-client.crt
    client-key: $p/kubelet-client.key
contexts:
- name: kubelet
  context: {cluster: kpo-async-e2e, user: kubelet}
current-context: kubelet
EOF
  chmod 0600 "$N/kubelet.kubeconfig"
}

write_containerd_config() {
  mkdir -p "$N/containerd" "$N/cni/bin" "$N/cni/net.d" "$N/certs.d/_default"
  install -m 0755 "$HERE/node/kpo-veth" "$N/cni/bin/kpo-veth"
  cat >"$N/cni/net.d/10-kpo-veth.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "kpo-async-pods", "plugins": [{"type": "kpo-veth"}]}
EOF
  cat >"$N/certs.d/_default/hosts.toml" <<EOF
# Any registry without its own directory here: a closed loopback port (no pull leaves the machine).
server = "http://$NOWHERE"
[host."http://$NOWHERE"]
  capabilities = ["pull", "resolve"]
EOF
  mkdir -p "$N/certs.d/$REGISTRY"
  cat >"$N/certs.d/$REGISTRY/hosts.toml" <<EOF
server = "http://$REGISTRY"
[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve"]
EOF
  cat >"$N/containerd/config.toml" <<EOF
version = 3
root = "$N/containerd/root"
state = "$N/containerd/state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$N/containerd/containerd.sock"
[ttrpc]
  address = "$N/containerd/containerd.sock.ttrpc"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  use_local_image_pull = true
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '$PAUSE_IMAGE'
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = '$N/certs.d'
[plugins.'io.containerd.cri.v1.runtime']
  # No CAP_SYS_RESOURCE in this machine's container: runc cannot lower oom_score_adj.
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '$(command -v runc)'
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['$N/cni/bin']
    conf_dir = '$N/cni/net.d'
    use_internal_loopback = true
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
EOF
}

write_kubelet_config() {
  : >"$N/resolv.conf"
  cat >"$N/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $HOST
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: $HOST
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $N/pki/kubelet-serving.crt
tlsPrivateKeyFile: $N/pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $DIR/pki/ca.crt}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$N/containerd/containerd.sock
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
resolvConf: $N/resolv.conf
podLogsDir: $N/pod-logs
maxPods: 250
serializeImagePulls: false
localStorageCapacityIsolation: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi"}
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
registerWithTaints:
- {key: $REAL_TAINT, value: "true", effect: NoSchedule}
EOF
}

import_images() {
  local imgs="$1" n first
  say "importing images from $imgs"
  ctr_ images import --snapshotter overlayfs "$imgs/pause.tar" 2>&1 >/dev/null | grep -v DEPRECATION >&2 || true
  ctr_ images import --snapshotter overlayfs "$imgs/shell.tar" 2>&1 >/dev/null | grep -v DEPRECATION >&2 || true
  ctr_ images import --snapshotter overlayfs "$imgs/python.tar" 2>&1 >/dev/null | grep -v DEPRECATION >&2 || true
  for n in "${SHELL_NAMES[@]}"; do
    [ "$n" = kpo-async.local/shell:1 ] || ctr_ images tag --force kpo-async.local/shell:1 "$n" >/dev/null
  done
  for n in "${PYTHON_NAMES[@]}"; do
    [ "$n" = kpo-async.local/python:1 ] || ctr_ images tag --force kpo-async.local/python:1 "$n" >/dev/null
  done
  # Pinned: kubelet's image garbage collection leaves the sandbox image alone.
  ctr_ images label "$PAUSE_IMAGE" io.cri-containerd.pinned=pinned >/dev/null
  first="$(ctr_ images ls -q | sort | tr '\n' ' ')"
  say "images: $first"
}

cmd_up() {
  cluster_env
  if cmd_status >/dev/null 2>&1; then
    say "already up ($NODE)"
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "the real node needs root (containers, mounts, cgroups)"
  local c
  for c in "${COMPONENTS[@]}"; do is_ours "$c" && { say "partly running: stopping first"; cmd_down; break; }; done
  NBIN="$("$HERE/build-node.sh")" || die "tools/build-node.sh could not provide the node binaries"
  local t0=$SECONDS imgs
  imgs="$("$HERE/node/images.sh" "$NBIN")" || die "tools/node/images.sh could not build the images"
  say "images ready in $((SECONDS - t0))s"
  for port in "$KUBELET_PORT" "$KUBELET_HEALTHZ_PORT" "${REGISTRY#*:}"; do
    ! (exec 3<>"/dev/tcp/$HOST/$port") 2>/dev/null || die "port $HOST:$port is in use; set KPO_ASYNC_KUBELET_PORT"
  done
  mkdir -p "$N"/{logs,pids,kubelet,pod-logs}
  echo "$NBIN" >"$N/bin-dir"
  gen_node_pki
  write_containerd_config
  write_kubelet_config

  say "starting registry (http://$REGISTRY)"
  mkdir -p "$N/registry"
  cat >"$N/registry/config.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $N/registry/data}
  delete: {enabled: true}
http:
  addr: $REGISTRY
EOF
  start registry env -i PATH=/usr/bin:/bin HOME="$N" OTEL_TRACES_EXPORTER=none OTEL_SDK_DISABLED=true \
    "$NBIN/registry" serve "$N/registry/config.yml"
  wait_for registry "registry /v2/" curl -sf --max-time 2 "http://$REGISTRY/v2/"
  skopeo copy --quiet --dest-tls-verify=false "docker-archive:$imgs/registry-shell.tar" \
    "docker://$REGISTRY/kpo-async/shell:1" || die "could not push the shell image to $REGISTRY"

  say "starting containerd ($("$NBIN/containerd" --version | awk '{print $3}'))"
  # The runc shim must be on containerd's PATH.
  start containerd env -i PATH="$NBIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME="$N" \
    "$NBIN/containerd" --config "$N/containerd/config.toml" --log-level warn
  wait_for containerd "containerd socket" ctr_ version
  import_images "$imgs"

  say "starting kubelet (https://$HOST:$KUBELET_PORT)"
  start kubelet env -i PATH="$NBIN:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME="$N" \
    "$NBIN/kubelet" \
    --config="$N/kubelet.yaml" \
    --kubeconfig="$N/kubelet.kubeconfig" \
    --root-dir="$N/kubelet" \
    --hostname-override="$NODE" \
    --node-labels="kpo-async.io/node=real" \
    --cloud-provider=external \
    --v=1
  wait_for kubelet "node $NODE registered" $K get node "$NODE"
  # kubelet refuses a loopback --node-ip and would otherwise publish the host's address (not loopback).
  # With --cloud-provider=external it only sets a Hostname address and keeps whatever "the cloud
  # provider" set later: that is this patch, InternalIP=127.0.0.1, where the API server sends logs/exec.
  $K patch node "$NODE" --subresource=status --type=merge \
    -p "{\"status\":{\"addresses\":[{\"type\":\"InternalIP\",\"address\":\"$HOST\"},{\"type\":\"Hostname\",\"address\":\"$NODE\"}]}}" >/dev/null
  wait_for kubelet "node $NODE Ready" node_ready
  # kube-controller-manager's node lifecycle controller lifts the not-ready taint once the node is
  # Ready; no cloud controller manager runs, so lift the external cloud provider's "uninitialized" taint
  # as its cloud-node controller would.
  wait_for kubelet "the node lifecycle controller to lift $NODE's not-ready taint" node_untainted
  $K taint node "$NODE" node.cloudprovider.kubernetes.io/uninitialized:NoSchedule- >/dev/null 2>&1 || true
  local ip
  ip="$($K get node "$NODE" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')"
  [ "$ip" = "$HOST" ] || die "node $NODE has InternalIP '$ip', expected $HOST (network rule)"
  say "up: node $NODE Ready in $((SECONDS - t0))s (tainted $REAL_TAINT; 'tools/node.sh target real' to use it)"
}

cmd_target() {
  cluster_env
  case "${1:-}" in
    real)
      $K taint node "$KWOK_NODE" "$KWOK_TAINT=true:NoSchedule" --overwrite >/dev/null
      $K taint node "$NODE" "$REAL_TAINT:NoSchedule-" >/dev/null 2>&1 || true
      ;;
    kwok)
      $K taint node "$NODE" "$REAL_TAINT=true:NoSchedule" --overwrite >/dev/null 2>&1 || true
      $K taint node "$KWOK_NODE" "$KWOK_TAINT:NoSchedule-" >/dev/null 2>&1 || true
      ;;
    *) die "usage: tools/node.sh target real|kwok" ;;
  esac
  say "new pods go to the ${1} node"
}

cmd_status() {
  local c rc=0
  cluster_env
  for c in "${COMPONENTS[@]}"; do
    if is_ours "$c"; then echo "$c: running (pid $(cut -d' ' -f1 <"$(pidfile "$c")"))"; else
      echo "$c: NOT running"
      rc=1
    fi
  done
  if node_ready; then echo "node $NODE: Ready"; else
    echo "node $NODE: NOT Ready"
    rc=1
  fi
  return $rc
}

# Remove the containers' mounts under the node's directory (deepest first) and the cgroups kubelet
# created at the root of each cgroup hierarchy.
cleanup_host() {
  local m h
  for m in $(awk -v d="$N/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
  for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
    [ -d "$h/kubepods" ] || [ -d "$h/kubepods.slice" ] || continue
    find "$h/kubepods" "$h/kubepods.slice" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
}

cmd_down() {
  local pid f
  if [ ! -d "$N" ]; then
    say "nothing to stop ($N does not exist)"
    return 0
  fi
  stop_one kubelet
  NBIN="$(cat "$N/bin-dir" 2>/dev/null || true)"
  # Containers outlive kubelet; stop them through their shims before containerd goes.
  if [ -n "$NBIN" ] && is_ours containerd; then
    for c in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$c" >/dev/null 2>&1 || true; done
    sleep 1
  fi
  stop_one containerd
  stop_one registry
  # Shims are re-parented away from containerd: find them by their -address argument (our socket).
  for f in /proc/[0-9]*/cmdline; do
    pid="${f#/proc/}"
    pid="${pid%/cmdline}"
    if tr '\0' ' ' <"$f" 2>/dev/null | grep -qF -- "-address $N/containerd/containerd.sock"; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  if [ -s "$DIR/cluster.env" ]; then
    cluster_env
    if $K get --raw=/readyz >/dev/null 2>&1; then
      $K delete node "$NODE" --wait=false >/dev/null 2>&1 || true
      $K taint node "$KWOK_NODE" "$KWOK_TAINT:NoSchedule-" >/dev/null 2>&1 || true
    fi
  fi
  cleanup_host
  rm -rf "$N" 2>/dev/null || { sleep 1; cleanup_host; rm -rf "$N"; }
  say "removed $N"
}

# More names for the local shell image (what a suite's pods name, e.g. the official operator's pinned
# XCom sidecar image), so that kubelet finds them present and never tries a pull.
cmd_alias() {
  local n
  [ $# -gt 0 ] || die "usage: tools/node.sh alias IMAGE..."
  is_ours containerd || die "containerd is not running: tools/node.sh up first"
  NBIN="$(cat "$N/bin-dir")"
  for n in "$@"; do
    # Docker's name normalization: no registry host (a first part with '.' or ':') means docker.io,
    # and a single name means library/.
    case "${n%%/*}" in
      *.* | *:* | localhost) [ "${n#*/}" != "$n" ] || n="docker.io/library/$n" ;;
      *) if [ "${n#*/}" != "$n" ]; then n="docker.io/$n"; else n="docker.io/library/$n"; fi ;;
    esac
    case "${n##*/}" in *:* | *@*) ;; *) n="$n:latest" ;; esac
    ctr_ images tag --force kpo-async.local/shell:1 "$n" >/dev/null 2>"$N/logs/alias.err" || {
      cat "$N/logs/alias.err" >&2
      die "could not tag kpo-async.local/shell:1 as $n"
    }
    say "image $n = kpo-async.local/shell:1"
  done
}

cmd_logs() {
  local c
  for c in "${COMPONENTS[@]}"; do
    echo "----- last lines of $N/logs/$c.log -----"
    tail -n "${1:-40}" "$N/logs/$c.log" 2>/dev/null || echo "(no log)"
  done
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  target) cmd_target "${2:-}" ;;
  logs) cmd_logs "${2:-40}" ;;
  alias)
    shift
    cmd_alias "$@"
    ;;
  *)
    echo "usage: $0 up|down|status|target real|kwok|logs [N]|alias IMAGE..." >&2
    exit 2
    ;;
esac
