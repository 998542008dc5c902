#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for the kpo-async e2e tests:
#   etcd + kube-apiserver (TLS, service-account issuer, RBAC) + kube-controller-manager + kube-scheduler
#   + kwok (fake node kwok-node-0 whose kubelet endpoint is 127.0.0.1) + tools/kwok/podfiles.py (per-pod
#   log/exec files).
#
#   tools/cluster.sh up       build/reuse binaries (tools/build.sh, tools/build-kcm.sh), start everything,
#                             wait until healthy
#   tools/cluster.sh down     stop what `up` started (by recorded pid, checked against the binary), the
#                             controller manager first, and remove the state directory
#   tools/cluster.sh status   print what runs; exit 0 only if every component is up and the API is ready
#   tools/cluster.sh env      print `export ...` lines (KUBECONFIG, KPO_ASYNC_CLUSTER_DIR, PATH)
#   tools/cluster.sh logs     print the tail of every component log
#
# State: ${KPO_ASYNC_CLUSTER_DIR:-/tmp/kpo-async-cluster}: pki/, *.kubeconfig, logs/, pids/, pods/.
# Every address is loopback (network rule): see docs/real-control-plane.md, "Network safety".
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
DIR="${KPO_ASYNC_CLUSTER_DIR:-/tmp/kpo-async-cluster}"
HOST=127.0.0.1
APISERVER_PORT="${KPO_ASYNC_APISERVER_PORT:-36443}"
ETCD_PORT="${KPO_ASYNC_ETCD_PORT:-32379}"
ETCD_PEER_PORT="${KPO_ASYNC_ETCD_PEER_PORT:-32380}"
SCHEDULER_PORT="${KPO_ASYNC_SCHEDULER_PORT:-30259}"
CONTROLLER_MANAGER_PORT="${KPO_ASYNC_CONTROLLER_MANAGER_PORT:-30257}"
KWOK_PORT="${KPO_ASYNC_KWOK_PORT:-30250}"
WAIT_SECONDS="${KPO_ASYNC_CLUSTER_WAIT:-90}"
NAMESPACE=kpo-async-e2e
NODE=kwok-node-0
# `down` stops them in reverse order: the controller manager first, so that it never acts on a
# half-stopped cluster (e.g. marks the node unreachable once kwok's heartbeats stop).
COMPONENTS=(etcd kube-apiserver kube-scheduler kwok podfiles kube-controller-manager)

say() { echo "cluster.sh: $*" >&2; }
die() {
  {
    echo
    echo "############################################################################"
    echo "# tools/cluster.sh FAILED: $*"
    echo "############################################################################"
  } >&2
  exit 1
}

find_python() {
  if [ -n "${KPO_ASYNC_PYTHON:-}" ]; then echo "$KPO_ASYNC_PYTHON"; return; fi
  for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1; then command -v "$p"; return; fi
  done
  die "python3 is needed for tools/kwok/podfiles.py"
}

# ---------------------------------------------------------------------------------------------------
# processes
pidfile() { echo "$DIR/pids/$1.pid"; }

# alive PID: the process exists and is not a zombie waiting to be reaped.
alive() {
  local state
  state="$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\) .*/\1/p' "/proc/$1/stat" 2>/dev/null)"
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# is_ours NAME: the recorded pid is alive and is the process we started for NAME: every component's
# command line names a path inside $DIR, which guards against a recycled pid.
is_ours() {
  local f pid
  f="$(pidfile "$1")"
  [ -s "$f" ] || return 1
  read -r pid _ <"$f" || return 1
  [ -n "$pid" ] && alive "$pid" || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DIR/"
}

start() { # start NAME CMD...
  local name="$1"
  shift
  local log="$DIR/logs/$name.log"
  setsid "$@" >"$log" 2>&1 </dev/null &
  echo "$! $name" >"$(pidfile "$name")"
  sleep 0.2
  if ! is_ours "$name"; then
    tail -n 30 "$log" >&2 || true
    die "$name exited right after start (log: $log)"
  fi
}

stop_one() {
  local name="$1" f pid
  f="$(pidfile "$name")"
  if is_ours "$name"; then
    read -r pid _ <"$f"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      alive "$pid" || break
      sleep 0.1
    done
    if alive "$pid"; then
      say "$name ($pid) did not stop on SIGTERM, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    say "stopped $name ($pid)"
  fi
  rm -f "$f"
}

tail_log() {
  local name="$1"
  echo "----- last lines of $DIR/logs/$name.log -----" >&2
  tail -n "${2:-40}" "$DIR/logs/$name.log" >&2 2>/dev/null || echo "(no log)" >&2
}

wait_for() { # wait_for NAME DESCRIPTION CMD...
  local name="$1" what="$2"
  shift 2
  local deadline=$((SECONDS + WAIT_SECONDS))
  while ! "$@" >/dev/null 2>&1; do
    if [ "$name" != "-" ] && ! is_ours "$name"; then
      tail_log "$name"
      die "$name died while waiting for $what"
    fi
    if [ $SECONDS -ge $deadline ]; then
      [ "$name" != "-" ] && tail_log "$name"
      die "timed out after ${WAIT_SECONDS}s waiting for $what"
    fi
    sleep 0.3
  done
}

port_free() {
  ! (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# ---------------------------------------------------------------------------------------------------
# PKI (openssl): one CA signs serving certs (apiserver, kwok's kubelet endpoint) and client certs.
gen_pki() {
  local p="$DIR/pki"
  mkdir -p "$p"
  [ -s "$p/ca.crt" ] && return 0
  say "generating certificates in $p"
  (
    cd "$p"
    umask 077
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 30 -subj "/CN=kpo-async-e2e-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out ca.crt 2>/dev/null
    cert() { # cert NAME SUBJECT EXT
      openssl ecparam -name prime256v1 -genkey -noout -out "$1.key" 2>/dev/null
      openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
      printf '%s\n' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -sha256 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
      rm -f "$1.csr" "$1.ext"
    }
    local serve="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost"
    local client="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
    cert apiserver "/CN=kube-apiserver" "$serve"
    cert kwok-serving "/CN=$NODE" "$serve"
    cert admin "/O=system:masters/CN=kpo-async-admin" "$client"
    cert kube-scheduler "/CN=system:kube-scheduler" "$client"
    cert kube-controller-manager "/CN=system:kube-controller-manager" "$client"
    cert kwok "/O=system:masters/CN=kwok-controller" "$client"
    cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client"
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 0644 ./*.crt sa.pub
  )
}

b64() { base64 -w0 <"$1"; }

kubeconfig_cert() { # kubeconfig_cert FILE USER CERTNAME
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kpo-async-e2e
  cluster:
    server: https://$HOST:$APISERVER_PORT
    certificate-authority-data: $(b64 "$DIR/pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$DIR/pki/$3.crt")
    client-key-data: $(b64 "$DIR/pki/$3.key")
contexts:
- name: $2
  context:
    cluster: kpo-async-e2e
    user: $2
    namespace: $NAMESPACE
current-context: $2
EOF
  chmod 0600 "$1"
}

kubeconfig_token() { # kubeconfig_token FILE USER TOKEN
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kpo-async-e2e
  cluster:
    server: https://$HOST:$APISERVER_PORT
    certificate-authority-data: $(b64 "$DIR/pki/ca.crt")
users:
- name: $2
  user:
    token: $3
contexts:
- name: $2
  context:
    cluster: kpo-async-e2e
    user: $2
    namespace: $NAMESPACE
current-context: $2
EOF
  chmod 0600 "$1"
}

# ---------------------------------------------------------------------------------------------------
status_ok() {
  local c
  for c in "${COMPONENTS[@]}"; do is_ours "$c" || return 1; done
  [ -s "$DIR/operator.kubeconfig" ] || return 1
  api_ready && controller_manager_healthy
}

# The controller manager serves /healthz with a self-signed certificate it made itself (like the
# scheduler); /healthz needs no credentials.
controller_manager_healthy() {
  curl -skf --max-time 5 "https://$HOST:$CONTROLLER_MANAGER_PORT/healthz" >/dev/null
}

# node_untainted NODE: the node carries none of the node lifecycle controller's condition taints.
node_untainted() {
  local keys
  keys="$("$(cat "$DIR/bin-dir")/kubectl" --kubeconfig="$DIR/admin.kubeconfig" get node "$1" \
    -o jsonpath='{.spec.taints[*].key}')" || return 1
  case " $keys " in *" node.kubernetes.io/not-ready "* | *" node.kubernetes.io/unreachable "*) return 1 ;; esac
}

api_ready() {
  curl -sf --max-time 5 --cacert "$DIR/pki/ca.crt" --cert "$DIR/pki/admin.crt" --key "$DIR/pki/admin.key" \
    "https://$HOST:$APISERVER_PORT/readyz" >/dev/null
}

cmd_status() {
  local c rc=0
  if [ ! -d "$DIR" ]; then
    echo "not running (no $DIR)"
    return 1
  fi
  for c in "${COMPONENTS[@]}"; do
    if is_ours "$c"; then
      echo "$c: running (pid $(cut -d' ' -f1 <"$(pidfile "$c")"))"
    else
      echo "$c: NOT running"
      rc=1
    fi
  done
  if api_ready; then echo "kube-apiserver /readyz: ok (https://$HOST:$APISERVER_PORT)"; else
    echo "kube-apiserver /readyz: NOT ready"
    rc=1
  fi
  if controller_manager_healthy; then
    echo "kube-controller-manager /healthz: ok (https://$HOST:$CONTROLLER_MANAGER_PORT)"
  else
    echo "kube-controller-manager /healthz: NOT ok"
    rc=1
  fi
  return $rc
}

cmd_env() {
  local bin
  bin="$(cat "$DIR/bin-dir" 2>/dev/null || true)"
  echo "export KPO_ASYNC_CLUSTER_DIR=$DIR"
  echo "export KUBECONFIG=$DIR/admin.kubeconfig"
  [ -n "$bin" ] && echo "export PATH=$bin:\$PATH"
  return 0
}

cmd_logs() {
  local c
  for c in "${COMPONENTS[@]}"; do tail_log "$c" "${1:-40}"; done
}

cmd_down() {
  local c i
  if [ ! -d "$DIR" ]; then
    say "nothing to stop ($DIR does not exist)"
    return 0
  fi
  # A real node (tools/node.sh) keeps mounts and containers under $DIR: stop it first.
  if [ -d "$DIR/node" ]; then
    "$HERE/node.sh" down || say "tools/node.sh down failed; continuing"
  fi
  for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
    c="${COMPONENTS[$i]}"
    [ -f "$(pidfile "$c")" ] && stop_one "$c"
  done
  # Only remove a directory that looks like ours.
  if [ -f "$DIR/.kpo-async-cluster" ]; then
    rm -rf "$DIR"
    say "removed $DIR"
  else
    say "not removing $DIR: it has no .kpo-async-cluster marker"
  fi
}

cmd_up() {
  local bin kcm_bin py run_as_nobody="" c
  mkdir -p "$DIR"
  if status_ok; then
    say "already up ($DIR)"
    return 0
  fi
  for c in "${COMPONENTS[@]}"; do
    if is_ours "$c"; then
      say "a previous control plane is partly running; stopping it first"
      cmd_down
      break
    fi
  done
  # A stale directory (e.g. after a reboot) is ours to clear only if it carries our marker.
  if [ -d "$DIR" ] && [ -n "$(ls -A "$DIR")" ]; then
    [ -f "$DIR/.kpo-async-cluster" ] || die "$DIR exists and is not a kpo-async cluster directory"
    rm -rf "$DIR"
  fi

  bin="$("$HERE/build.sh")" || die "tools/build.sh could not provide the binaries (see above)"
  kcm_bin="$("$HERE/build-kcm.sh")" || die "tools/build-kcm.sh could not provide kube-controller-manager (see above)"
  py="$(find_python)"
  command -v openssl >/dev/null || die "openssl is needed (apt-get install openssl)"
  command -v curl >/dev/null || die "curl is needed for health checks (apt-get install curl)"

  for port in "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$SCHEDULER_PORT" "$KWOK_PORT" \
    "$CONTROLLER_MANAGER_PORT"; do
    port_free "$port" || die "port $HOST:$port is already in use by another process; set KPO_ASYNC_*_PORT"
  done

  if [ "$(id -u)" = 0 ]; then
    run_as_nobody="--run-as-nobody"
    # Exec'd commands run as nobody and must reach $DIR/shim and $DIR/pods.
    local p="$DIR"
    while [ "$p" != / ] && [ -n "$p" ]; do
      [ -n "$(find "$p" -maxdepth 0 -perm -o+x 2>/dev/null)" ] ||
        die "$p is not searchable by other users; exec into kwok pods runs as nobody: pick another KPO_ASYNC_CLUSTER_DIR"
      p="$(dirname "$p")"
    done
  fi
  mkdir -p "$DIR"/{logs,pids,pods,etcd,shim,kwok-home}
  touch "$DIR/.kpo-async-cluster"
  chmod 0755 "$DIR" "$DIR/pods"
  echo "$bin" >"$DIR/bin-dir"
  gen_pki
  local K="$bin/kubectl --kubeconfig=$DIR/admin.kubeconfig"
  kubeconfig_cert "$DIR/admin.kubeconfig" kpo-async-admin admin
  kubeconfig_cert "$DIR/kube-scheduler.kubeconfig" system:kube-scheduler kube-scheduler
  kubeconfig_cert "$DIR/kube-controller-manager.kubeconfig" system:kube-controller-manager kube-controller-manager
  kubeconfig_cert "$DIR/kwok.kubeconfig" kwok-controller kwok

  # Exec shim: kwok's PATH holds only these names, each a link to exec-shim.sh (copied so `nobody`
  # can read it even when the checkout is not world-readable).
  install -m 0755 "$HERE/kwok/exec-shim.sh" "$DIR/shim/kpo-exec-shim"
  for c in cat touch test "[" ls echo printf true false sleep kill sh bash; do
    ln -sf kpo-exec-shim "$DIR/shim/$c"
  done
  chmod 0755 "$DIR/shim"

  say "starting etcd on $HOST:$ETCD_PORT"
  start etcd "$bin/etcd" \
    --name=kpo-async-e2e \
    --data-dir="$DIR/etcd" \
    --listen-client-urls="http://$HOST:$ETCD_PORT" \
    --advertise-client-urls="http://$HOST:$ETCD_PORT" \
    --listen-peer-urls="http://$HOST:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://$HOST:$ETCD_PEER_PORT" \
    --initial-cluster="kpo-async-e2e=http://$HOST:$ETCD_PEER_PORT" \
    --initial-cluster-state=new \
    --quota-backend-bytes=$((512 * 1024 * 1024)) \
    --unsafe-no-fsync=true \
    --log-level=warn
  wait_for etcd "etcd health" curl -sf --max-time 2 "http://$HOST:$ETCD_PORT/health"

  say "starting kube-apiserver on https://$HOST:$APISERVER_PORT"
  start kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers="http://$HOST:$ETCD_PORT" \
    --bind-address=$HOST \
    --advertise-address=$HOST \
    --secure-port="$APISERVER_PORT" \
    --tls-cert-file="$DIR/pki/apiserver.crt" \
    --tls-private-key-file="$DIR/pki/apiserver.key" \
    --client-ca-file="$DIR/pki/ca.crt" \
    --service-account-issuer="https://$HOST:$APISERVER_PORT" \
    --service-account-key-file="$DIR/pki/sa.pub" \
    --service-account-signing-key-file="$DIR/pki/sa.key" \
    --authorization-mode=Node,RBAC \
    --service-cluster-ip-range=10.96.0.0/16 \
    --endpoint-reconciler-type=none \
    --kubelet-certificate-authority="$DIR/pki/ca.crt" \
    --kubelet-client-certificate="$DIR/pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$DIR/pki/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --profiling=false \
    --v=1
  wait_for kube-apiserver "kube-apiserver /readyz" api_ready

  # Acts as system:kube-controller-manager (bootstrap RBAC); each controller then runs as its own
  # kube-system ServiceAccount (--use-service-account-credentials), as on a kubeadm cluster. No
  # --authentication/authorization-kubeconfig: the API server has no request-header CA to delegate
  # with, and /healthz is always allowed. kwok's node heartbeat (no Lease) comes every 20-25 s, so the
  # node is declared unreachable after 40 s without one rather than the default 50 s.
  say "starting kube-controller-manager (/healthz on https://$HOST:$CONTROLLER_MANAGER_PORT)"
  start kube-controller-manager "$kcm_bin/kube-controller-manager" \
    --kubeconfig="$DIR/kube-controller-manager.kubeconfig" \
    --bind-address=$HOST \
    --secure-port="$CONTROLLER_MANAGER_PORT" \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --service-account-private-key-file="$DIR/pki/sa.key" \
    --root-ca-file="$DIR/pki/ca.crt" \
    --controllers='*' \
    --node-monitor-grace-period=40s \
    --profiling=false \
    --v=1
  wait_for kube-controller-manager "kube-controller-manager /healthz" controller_manager_healthy

  say "installing kwok CRDs, RBAC ($REPO/tools/rbac.yaml) and node $NODE"
  $K apply -f "$bin/kwok-crds/" >/dev/null
  $K wait --for=condition=Established --timeout=60s crd/execs.kwok.x-k8s.io crd/logs.kwok.x-k8s.io >/dev/null
  $K apply -f "$HERE/rbac.yaml" >/dev/null
  $K apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $NODE
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: $NODE
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
spec: {}
EOF

  say "starting kube-scheduler"
  start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig="$DIR/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$DIR/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$DIR/kube-scheduler.kubeconfig" \
    --bind-address=$HOST \
    --secure-port="$SCHEDULER_PORT" \
    --leader-elect=false \
    --v=1
  # The scheduler serves /healthz with a self-signed certificate it made itself; it is only probed here.
  wait_for kube-scheduler "kube-scheduler /healthz" curl -skf --max-time 2 "https://$HOST:$SCHEDULER_PORT/healthz"

  say "starting kwok (kubelet endpoint https://$HOST:$KWOK_PORT)"
  # env -i: kwok runs with a PATH of exec-shim names only, and its own HOME (so no ~/.kwok config leaks in).
  start kwok env -i HOME="$DIR/kwok-home" PATH="$DIR/shim" LANG=C \
    "$bin/kwok" \
    --config="$HERE/kwok/kwok.yaml" \
    --config="$HERE/kwok/stages.yaml" \
    --kubeconfig="$DIR/kwok.kubeconfig" \
    --node-ip=$HOST \
    --node-port="$KWOK_PORT" \
    --server-address="$HOST:$KWOK_PORT" \
    --tls-cert-file="$DIR/pki/kwok-serving.crt" \
    --tls-private-key-file="$DIR/pki/kwok-serving.key" \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake
  wait_for kwok "kwok /healthz" curl -sf --max-time 2 --cacert "$DIR/pki/ca.crt" "https://$HOST:$KWOK_PORT/healthz"
  wait_for kwok "node $NODE Ready" \
    $K wait --for=condition=Ready --timeout=2s "node/$NODE"
  # The API server's TaintNodesByCondition admission put node.kubernetes.io/not-ready:NoSchedule on
  # the new node; the node lifecycle controller lifts it once the node is Ready.
  wait_for kube-controller-manager "the node lifecycle controller to lift $NODE's not-ready taint" \
    node_untainted "$NODE"
  local ip
  ip="$($K get node "$NODE" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')"
  [ "$ip" = "$HOST" ] || die "node $NODE has InternalIP '$ip', expected $HOST (network rule)"

  say "starting podfiles helper"
  rm -f "$DIR/podfiles.ready"
  start podfiles "$py" "$HERE/kwok/podfiles.py" \
    --server="https://$HOST:$APISERVER_PORT" \
    --ca="$DIR/pki/ca.crt" --cert="$DIR/pki/admin.crt" --key="$DIR/pki/admin.key" \
    --pods-dir="$DIR/pods" --shim-dir="$DIR/shim" --ready-file="$DIR/podfiles.ready" $run_as_nobody
  wait_for podfiles "podfiles helper" test -s "$DIR/podfiles.ready"

  # The serviceaccount controller creates `default` in every namespace, the root-ca-cert-publisher
  # kube-root-ca.crt (service-account token volumes mount it); pods are refused until `default` exists.
  wait_for kube-controller-manager "ServiceAccount $NAMESPACE/default and ConfigMap kube-root-ca.crt" \
    $K -n "$NAMESPACE" get serviceaccount/default configmap/kube-root-ca.crt
  say "writing operator kubeconfigs (ServiceAccount tokens from the TokenRequest API)"
  local tok
  tok="$($K -n "$NAMESPACE" create token kpo-async --duration=48h)" || die "could not create a token for kpo-async"
  kubeconfig_token "$DIR/operator.kubeconfig" "system:serviceaccount:$NAMESPACE:kpo-async" "$tok"
  tok="$($K -n "$NAMESPACE" create token kpo-async-no-exec --duration=48h)" ||
    die "could not create a token for kpo-async-no-exec"
  kubeconfig_token "$DIR/missing-perm.kubeconfig" "system:serviceaccount:$NAMESPACE:kpo-async-no-exec" "$tok"

  cat >"$DIR/cluster.env" <<EOF
KPO_ASYNC_CLUSTER_DIR=$DIR
KPO_ASYNC_APISERVER=https://$HOST:$APISERVER_PORT
KPO_ASYNC_ETCD=http://$HOST:$ETCD_PORT
KPO_ASYNC_CONTROLLER_MANAGER=https://$HOST:$CONTROLLER_MANAGER_PORT
KPO_ASYNC_NAMESPACE=$NAMESPACE
KPO_ASYNC_NODE=$NODE
KPO_ASYNC_BIN_DIR=$bin
KPO_ASYNC_RUN_AS_NOBODY=${run_as_nobody:+1}
EOF
  say "up: API https://$HOST:$APISERVER_PORT, admin kubeconfig $DIR/admin.kubeconfig," \
    "operator kubeconfig $DIR/operator.kubeconfig (namespace $NAMESPACE)"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  logs) cmd_logs "${2:-40}" ;;
  *)
    echo "usage: $0 up|down|status|env|logs" >&2
    exit 2
    ;;
esac
