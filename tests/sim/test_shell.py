"""The shell subset, run for real through exec (`sh -c SCRIPT`) in one container over WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from kpo_async.testing.sim import SimCluster

from .conftest import pod_manifest, run_exec, wait_phase

CASES: list[tuple[str, str, str, int]] = [
    # (script, stdout, stderr, exit code)
    ('echo hello "$NAME" ${NAME} ${MISSING:-dflt} ${NAME:+set}', "hello world world dflt set\n", "", 0),
    ("echo -n a; echo b; echo -e 'x\\ty'; echo 'no\\tescape'", "ab\nx\ty\nno\\tescape\n", "", 0),
    ('printf "%s=%d %5s|%-3s|%%\\n" a 42 r l', "a=42     r|l  |%\n", "", 0),
    ("printf '%s\\n' one two three", "one\ntwo\nthree\n", "", 0),
    ("x=7; echo $((x * (2 + 3) % 4)) $((10 / 3)) $((-7 / 2)) $((x > 5 && 1))", "3 3 -3 1\n", "", 0),
    ("i=0; i=$((i+1)); : $((i+=2)); echo $i", "3\n", "", 0),
    (
        'echo \'single $NAME\' "double $NAME" esc\\ aped "q\\"uote"',
        'single $NAME double world esc aped q"uote\n',
        "",
        0,
    ),
    ("for i in 1 2 3; do echo -n $i; done; echo", "123\n", "", 0),
    ("for i in $(seq 1 3); do echo n$i; done", "n1\nn2\nn3\n", "", 0),
    ("n=0; while [ $n -lt 3 ]; do n=$((n+1)); done; echo $n", "3\n", "", 0),
    ("n=3; until [ $n -eq 0 ]; do echo $n; n=$((n-1)); done", "3\n2\n1\n", "", 0),
    ('if [ 1 -gt 2 ]; then echo a; elif [ -z "" ]; then echo b; else echo c; fi', "b\n", "", 0),
    ('[ "$NAME" = world ] && echo eq || echo ne; [ a != a ] || echo ne2', "eq\nne2\n", "", 0),
    ("test -e /nope; echo $?; [ ! -e /nope ] && echo absent", "1\nabsent\n", "", 0),
    ("false; echo $?; true && echo t; false || echo f", "1\nt\nf\n", "", 0),
    (
        "echo hi > /tmp/f; echo more >> /tmp/f; cat /tmp/f; [ -f /tmp/f ] && echo file",
        "hi\nmore\nfile\n",
        "",
        0,
    ),
    (
        "mkdir -p /work/a/b && touch /work/a/b/c && ls /work/a/b; rm -f /work/a/b/c; ls /work/a/b",
        "c\n",
        "",
        0,
    ),
    ("cat /nope", "", "cat: can't open '/nope': No such file or directory\n", 1),
    ("echo out; echo err >&2; echo both 2>&1; ls /nope 2>/dev/null; echo $?", "out\nboth\n1\n", "err\n", 0),
    ("nosuch arg; echo status=$?", "status=127\n", "sh: nosuch: not found\n", 0),
    ("exit 5", "", "", 5),
    ("sleep 0.05; echo slept", "slept\n", "", 0),
    ('x=$(echo inner); echo "[$x]" `echo back`', "[inner] back\n", "", 0),
    ("echo a | cat", "a\n", "", 0),
    ("for i in 1 2 3 4; do if [ $i = 3 ]; then break; fi; echo $i; done", "1\n2\n", "", 0),
    ("trap 'echo cleanup' EXIT; echo main", "main\ncleanup\n", "", 0),
    ("set -e; echo one; false; echo never", "one\n", "", 1),
    ("set -x; echo traced", "traced\n", "+ echo traced\n", 0),
    ("echo ${#NAME} ${NAME%ld} ${NAME#wo}", "5 wor rld\n", "", 0),
    ("echo $((1/0))", "", "sh: divide by zero\n", 2),
    ('echo "unterminated', "", "sh: syntax error: unterminated quoted string\n", 2),
    (
        "case a in a) echo a;; esac",
        "",
        "sh: case statements are not supported by the kpo-async simulator (see docs/embedded-cluster.md)\n",
        127,
    ),
    ("echo $HOSTNAME; hostname", "shell\nshell\n", "", 0),
    ("cd /tmp && pwd && echo x > rel && cat /tmp/rel", "/tmp\nx\n", "", 0),
    ("echo a b > /tmp/g; for w in $(cat /tmp/g); do echo [$w]; done", "[a]\n[b]\n", "", 0),
    ("touch /tmp/x1 /tmp/x2; echo /tmp/x*", "/tmp/x1 /tmp/x2\n", "", 0),
    ("{ echo grouped; echo again; } > /tmp/grp; cat /tmp/grp", "grouped\nagain\n", "", 0),
    ("(exit 3); echo sub=$?", "sub=3\n", "", 0),
]


@pytest.fixture
async def shell_pod(cluster: SimCluster, v1: client.CoreV1Api) -> AsyncIterator[str]:
    manifest = pod_manifest("shell", "sleep 300")
    manifest["spec"]["containers"][0]["env"] = [{"name": "NAME", "value": "world"}]
    await v1.create_namespaced_pod("default", manifest)
    await wait_phase(v1, "shell", ("Running",))
    yield "shell"


async def sh(ws_v1: client.CoreV1Api, pod: str, script: str, container: str = "base") -> tuple[str, str, int]:
    out, err, status = await run_exec(ws_v1, pod, ["sh", "-c", script], container)
    code = 0 if status.get("status") == "Success" else int(status["details"]["causes"][0]["message"])
    return out.decode(), err.decode(), code


async def test_shell_subset(shell_pod: str, ws_v1: client.CoreV1Api) -> None:
    failures: list[Any] = []
    for script, want_out, want_err, want_code in CASES:
        got = await sh(ws_v1, shell_pod, script)
        if got != (want_out, want_err, want_code):
            failures.append((script, got, (want_out, want_err, want_code)))
    assert not failures, "\n".join(f"{s!r}: got {g!r}, want {w!r}" for s, g, w in failures)


async def test_files_are_shared_through_emptydir(v1: client.CoreV1Api, ws_v1: client.CoreV1Api) -> None:
    await v1.create_namespaced_pod("default", pod_manifest("share", "sleep 30", sidecar=True))
    await wait_phase(v1, "share", ("Running",))
    await sh(ws_v1, "share", "echo shared > /airflow/xcom/note; echo private > /tmp/note")
    ctx_out = await ws_v1.connect_get_namespaced_pod_exec(
        "share",
        "default",
        container="airflow-xcom-sidecar",
        command=["sh", "-c", "cat /airflow/xcom/note; cat /tmp/note"],
        stdout=True,
        stderr=True,
        stdin=False,
        tty=False,
    )
    assert ctx_out == "shared\ncat: can't open '/tmp/note': No such file or directory\n"


async def test_python_runs_on_the_containers_files(v1: client.CoreV1Api, ws_v1: client.CoreV1Api) -> None:
    """`python` (what @task.kubernetes pods run) reads and writes the container's files, sees its env,
    and what it writes into a shared volume is there for the sidecar."""
    await v1.create_namespaced_pod("default", pod_manifest("py", "sleep 30", sidecar=True))
    await wait_phase(v1, "py", ("Running",))
    program = 'import sys; print(sys.argv[1:]); print(open("/tmp/in").read().strip(), end="")'
    result = '{"who": os.environ["WHO"]}, open("/airflow/xcom/return.json", "w")'
    write = f'import os, json; os.makedirs("/airflow/xcom", exist_ok=True); json.dump({result})'
    script = (
        f"echo '{program}' > /tmp/s.py; echo from-shell > /tmp/in; export WHO=env-var; "
        f"python /tmp/s.py a b && python -c '{write}'; "
        "echo; python -c 'raise SystemExit(4)'; echo status=$?"
    )
    out, err, code = await sh(ws_v1, "py", script)
    assert (out, code) == ("['a', 'b']\nfrom-shell\nstatus=4\n", 0), err
    sidecar = await ws_v1.connect_get_namespaced_pod_exec(
        "py",
        "default",
        container="airflow-xcom-sidecar",
        command=["cat", "/airflow/xcom/return.json"],
        stdout=True,
        stderr=True,
        stdin=False,
        tty=False,
    )
    # (the client turns a JSON-looking exec output into its repr)
    assert sidecar in ('{"who": "env-var"}', "{'who': 'env-var'}"), sidecar
    out, err, code = await sh(ws_v1, "py", "python -c 'import sys; print(1 / 0)'")
    assert (out, code) == ("", 1) and err.rstrip().endswith("ZeroDivisionError: division by zero"), err
