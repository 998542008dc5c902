#!/bin/sh
# kpo-async kwok exec shim: what "runs" when someone execs into a kwok pod.
#
# kwok's local exec runs the requested command on THIS host (os/exec, looked up on kwok's own PATH) in
# the Exec object's workDir. tools/cluster.sh starts kwok with PATH set to a directory that holds only
# symlinks to this script (cat, touch, test, [, ls, echo, printf, true, false, sleep, kill, sh, bash),
# and tools/kwok/podfiles.py points every pod's Exec workDir at that pod's private fake root
# ($KPO_ASYNC_CLUSTER_DIR/pods/<ns>/<pod>/root). So:
#   * no host program is ever run for a bare command name: unknown names fail with kwok's
#     "executable file not found in $PATH";
#   * absolute container paths (/airflow/xcom/return.json) are mapped into the pod's fake root;
#     paths containing ".." are refused;
#   * `kill` never signals anything: `kill -2 1` / `kill -s SIGINT 1` / `kill -INT 1` (how the official
#     provider stops its XCom sidecar) only writes the same marker as `touch /airflow/xcom/.kpo-async-done`;
#   * `sh -c` / `bash -c` are NOT a shell: the script is interpreted by this file, which understands a
#     single simple command, `a; b` sequences, `exit N`, and the official provider's
#     `if [ -s F ]; then cat F; else echo X; fi` form. Anything else exits 126.
# When kwok runs as root, cluster.sh also makes the exec run as nobody (Exec securityContext), so a
# command given by absolute host path (e.g. /bin/kill) still cannot signal or modify root's processes/files.
set -u
PATH=/usr/bin:/bin
export PATH
LC_ALL=C
export LC_ALL

self_dir=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd -P)
prog=$(basename -- "$0")
root=$(pwd -P)

case "$root" in
  */pods/*/*/root) ;;
  *)
    echo "kpo-async exec shim: refusing to run outside a pod's fake root (cwd $root)" >&2
    exit 126
    ;;
esac

DONE_MARKER=/airflow/xcom/.kpo-async-done

# map <container path>: print the host path inside the pod's fake root.
map() {
  p=$1
  case "$p" in
    /*) ;;
    *) p="/$p" ;;
  esac
  case "$p" in
    *..*)
      echo "$prog: $1: paths containing '..' are not supported by the kwok exec shim" >&2
      return 1
      ;;
  esac
  printf '%s%s' "$root" "$p"
}

run() {
  cmd=$1
  shift
  case "$cmd" in
    cat)
      rc=0
      if [ "$#" -eq 0 ]; then /bin/cat; return $?; fi
      for f in "$@"; do
        case "$f" in -*) continue ;; esac
        h=$(map "$f") || { rc=1; continue; }
        if [ -d "$h" ]; then
          echo "cat: $f: Is a directory" >&2; rc=1
        elif [ -f "$h" ]; then
          /bin/cat -- "$h" || rc=1
        else
          echo "cat: $f: No such file or directory" >&2; rc=1
        fi
      done
      return $rc
      ;;
    touch)
      rc=0
      for f in "$@"; do
        case "$f" in -*) continue ;; esac
        h=$(map "$f") || { rc=1; continue; }
        if [ ! -d "$(dirname -- "$h")" ]; then
          echo "touch: cannot touch '$f': No such file or directory" >&2; rc=1; continue
        fi
        : >>"$h" || rc=1
      done
      return $rc
      ;;
    test | "[")
      if [ "$cmd" = "[" ]; then
        eval "last=\${$#}"
        # shellcheck disable=SC2154
        if [ "$last" != "]" ]; then echo "[: missing ]" >&2; return 2; fi
      fi
      if [ "$#" -ge 2 ]; then
        case "$1" in
          -s | -e | -f | -d | -r)
            h=$(map "$2") || return 2
            /usr/bin/test "$1" "$h"
            return $?
            ;;
        esac
      fi
      echo "$cmd: only -s/-e/-f/-d/-r FILE are supported by the kwok exec shim" >&2
      return 2
      ;;
    ls)
      rc=0
      for f in "$@"; do
        case "$f" in -*) continue ;; esac
        h=$(map "$f") || { rc=2; continue; }
        if [ -d "$h" ]; then
          (cd "$h" && /bin/ls -A) || rc=2
        elif [ -e "$h" ]; then
          echo "$f"
        else
          echo "ls: cannot access '$f': No such file or directory" >&2; rc=2
        fi
      done
      return $rc
      ;;
    echo) /bin/echo "$@" ;;
    printf) /usr/bin/printf "$@" ;;
    true) return 0 ;;
    false) return 1 ;;
    sleep)
      # Bounded: an exec'd sleep never outlives 60 s.
      case "${1:-}" in
        '' | *[!0-9.]*) echo "sleep: invalid time interval '${1:-}'" >&2; return 1 ;;
      esac
      /usr/bin/timeout 60 /bin/sleep "$1"
      return 0
      ;;
    kill)
      sig=""
      target=""
      while [ "$#" -gt 0 ]; do
        case "$1" in
          -s) sig=${2:-}; shift 2 || shift ;;
          -*) sig=${1#-}; shift ;;
          *) target=$1; shift ;;
        esac
      done
      if [ "$target" = "1" ]; then
        h=$(map "$DONE_MARKER") || return 1
        if [ ! -d "$(dirname -- "$h")" ]; then
          echo "kill: (1) - Operation not permitted" >&2
          return 1
        fi
        : >>"$h"
        return 0
      fi
      echo "kill: ($target) - No such process" >&2
      return 1
      ;;
    exit)
      return "${1:-0}"
      ;;
    sh | bash)
      script=""
      while [ "$#" -gt 0 ]; do
        case "$1" in
          -c | -*c | -*c*) shift; script=${1:-}; break ;;
          -*) shift ;;
          *) break ;;
        esac
      done
      if [ -z "$script" ]; then
        echo "$cmd: only '$cmd -c SCRIPT' is supported by the kwok exec shim (no interactive shell)" >&2
        return 126
      fi
      run_script "$script"
      return $?
      ;;
    *)
      echo "$cmd: not supported by the kwok exec shim" >&2
      return 127
      ;;
  esac
}

# run_words "<simple command>": split on blanks (no quoting, no globbing) and run.
run_words() {
  case "$1" in
    *[\'\"\`\$\|\&\<\>\(\)\{\}\\]*)
      echo "sh: '$1': quoting, variables, pipes and redirections are not supported by the kwok exec shim" >&2
      return 126
      ;;
  esac
  set -f
  # shellcheck disable=SC2086
  set -- $1
  set +f
  [ "$#" -eq 0 ] && return 0
  run "$@"
}

run_script() {
  s=$1
  # The official provider's XCom read:
  #   if [ -s /airflow/xcom/return.json ]; then cat /airflow/xcom/return.json; else echo __airflow_xcom_result_empty__; fi
  case "$s" in
    "if "*"; then "*"; else "*"; fi"*)
      cond=${s#if }
      cond=${cond%%; then *}
      rest=${s#*; then }
      then_part=${rest%%; else *}
      else_part=${rest#*; else }
      else_part=${else_part%; fi*}
      if run_words "$cond"; then run_words "$then_part"; else run_words "$else_part"; fi
      return $?
      ;;
  esac
  rc=0
  old_ifs=$IFS
  IFS=';'
  set -f
  # shellcheck disable=SC2086
  set -- $s
  set +f
  IFS=$old_ifs
  for part in "$@"; do
    trimmed=$(printf '%s' "$part" | /bin/sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
    [ -z "$trimmed" ] && continue
    case "$trimmed" in
      "exit" | "exit "*)
        n=${trimmed#exit}
        n=$(printf '%s' "$n" | /bin/sed -e 's/[[:space:]]//g')
        exit "${n:-$rc}"
        ;;
    esac
    run_words "$trimmed"
    rc=$?
  done
  return $rc
}

case "$prog" in
  exec-shim.sh | kpo-exec-shim)
    echo "kpo-async exec shim: call me through a command-name symlink" >&2
    exit 126
    ;;
esac
: "$self_dir"
run "$prog" "$@"
exit $?
