"""amber migrate between two hosts on one machine (tests/peers/hosts.py): over ssh, both runtimes,
copy, page-server and lazy modes (lazy: the test raises fs.pipe-max-size, and puts it back).

A counting container moves from A to B and counts on there, with the same IP and MAC; a failure
on B (its amber killed mid-restore, a name taken there) leaves it running on A, its state intact.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.adapters.run import run, spawn
from tests.conftest import Amber
from tests.peers.counting import COUNTER, amber_counter
from tests.peers.hosts import Host, TwoHosts, remote_amber, two_hosts

pytestmark = [pytest.mark.root, pytest.mark.stack]
__all__ = ["two_hosts"]  # the fixture, used by name

IMAGE = "localhost/demo:latest"


def _start(hosts: TwoHosts, runtime: str) -> int:
    hosts.a.amber_cmd(
        "run", "-d", "--name", "cnt", "--network", "mig", "--runtime", runtime, IMAGE, "sh", "-c", COUNTER
    )
    return amber_counter(hosts.a.amber, "cnt", 5)


def _address(amber: Amber) -> tuple[str, str]:
    engine = amber.fresh_engine()
    lease = engine.networks.attachments(engine.containers.store.get("cnt").id)["mig"]
    return lease.ip, lease.mac


def _running(amber: Amber) -> bool:
    engine = amber.fresh_engine()
    c = engine.containers.store.find("cnt")
    return c is not None and engine.containers.refresh(c).status == "running"


def _migrate(hosts: TwoHosts, *extra: str, remote: str | None = None) -> tuple[int, str]:
    result = hosts.a.amber_cmd(
        "migrate",
        "cnt",
        hosts.dest,
        "--remote-amber",
        remote or remote_amber(hosts.b),
        *hosts.ssh_args(),
        *extra,
        check=False,
    )
    return result.returncode, result.stderr


MODES = pytest.mark.parametrize("mode", ["copy", "page-server", "lazy"])
PIPE_MAX_SIZE = Path("/proc/sys/fs/pipe-max-size")
LAZY_PIPE_MIN = 4194304  # CRIU's lazy page server needs a pipe this large (amber refuses less)


@pytest.fixture(autouse=True)
def lazy_pipe_size(request: pytest.FixtureRequest) -> Iterator[None]:
    """Lazy mode's host setting, raised for the test (one machine: both hosts share it), put back after."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or callspec.params.get("mode") != "lazy":
        yield
        return
    before = PIPE_MAX_SIZE.read_text()
    if int(before) < LAZY_PIPE_MIN:
        PIPE_MAX_SIZE.write_text(f"{LAZY_PIPE_MIN}\n")
    try:
        yield
    finally:
        PIPE_MAX_SIZE.write_text(before)


@MODES
def test_moves_a_counting_container_with_its_address(two_hosts: TwoHosts, runtime: str, mode: str) -> None:
    before = _start(two_hosts, runtime)
    address = _address(two_hosts.a.amber)
    code, err = _migrate(two_hosts, "--mode", mode)
    assert code == 0, err
    if mode == "lazy":  # the memory followed after it ran there, and the end of that is reported
        assert "runs on ssh://" in err and "the lazy transfer ended:" in err, err
    assert amber_counter(two_hosts.b.amber, "cnt", before) > before  # it carries on from its count
    assert _running(two_hosts.b.amber)
    assert _address(two_hosts.b.amber) == address  # same IP and MAC on B's network of that name
    assert two_hosts.a.amber.fresh_engine().containers.store.find("cnt") is None  # gone from A


@MODES
def test_destination_killed_mid_restore_leaves_it_running_on_a(two_hosts: TwoHosts, runtime: str, mode: str) -> None:
    before = _start(two_hosts, runtime)
    kill = remote_amber(two_hosts.b, "AMBER_TEST_KILL_AT=after-extract")
    code, err = _migrate(two_hosts, "--mode", mode, remote=kill)
    assert code != 0
    assert "error:" in err and "hint:" in err
    assert _running(two_hosts.a.amber), err
    assert amber_counter(two_hosts.a.amber, "cnt", before) > before  # its state intact, counting on


def test_name_taken_on_destination_is_refused_before_the_freeze(two_hosts: TwoHosts) -> None:
    _start(two_hosts, "crun")
    pid = two_hosts.a.amber.fresh_engine().containers.store.get("cnt").pid
    two_hosts.b.amber_cmd("create", "--name", "cnt", IMAGE, "true")
    code, err = _migrate(two_hosts)
    assert code == 4, err  # ConflictError: the destination's own exit code
    assert "already in use on the destination" in err
    assert two_hosts.a.amber.fresh_engine().containers.store.get("cnt").pid == pid  # never frozen nor restored


def _receiving(host: Host) -> bool:
    """Whether an `amber migrate-receive` of `host` still runs."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"migrate-receive" in argv and str(host.amber.root).encode() in argv:
            return True
    return False


def _cgroups(cid: str) -> set[Path]:
    return {g for g in Path("/sys/fs/cgroup").rglob("*") if cid in g.name}


@MODES
def test_move_called_off_after_the_destination_prepared_leaves_it_clean(two_hosts: TwoHosts, mode: str) -> None:
    _start(two_hosts, "crun")
    cid = two_hosts.a.amber.fresh_engine().containers.store.get("cnt").id
    pid = two_hosts.a.amber.fresh_engine().containers.store.get("cnt").pid
    cgroups = _cgroups(cid)
    argv = two_hosts.a.amber_argv()  # the source dies once B answered the preflight (B joined the network)
    killed = two_hosts.a.run(
        argv[0], "AMBER_TEST_KILL_AT=migrate-after-preflight", *argv[1:], "migrate", "cnt", two_hosts.dest,
        "--mode", mode, "--remote-amber", remote_amber(two_hosts.b), *two_hosts.ssh_args(), check=False,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    deadline = time.monotonic() + 120  # B hears the channel end, calls the move off and undoes its work
    while _receiving(two_hosts.b) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _receiving(two_hosts.b)
    b = two_hosts.b.amber.fresh_engine()
    assert b.containers.store.find("cnt") is None and b.containers.store.find(cid) is None
    assert b.networks.attachments(cid) == {}  # no lease: the address is free on B
    paths = b.containers.paths(cid)
    assert not paths.netns.exists() and not paths.dir.exists()
    b_dirs = (str(two_hosts.b.amber.root), str(two_hosts.b.amber.runroot))
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    assert not [m for m in mounts if cid in m and any(d in m for d in b_dirs)]  # no overlay root, no netns
    assert _cgroups(cid) == cgroups  # A's container's own only: none made for B
    assert two_hosts.a.amber.fresh_engine().containers.store.get("cnt").pid == pid  # never frozen on A
    assert _running(two_hosts.a.amber)
    code, err = _migrate(two_hosts, "--mode", mode)  # and the move can be made again
    assert code == 0, err
    assert _running(two_hosts.b.amber)


def test_pre_copy_is_refused_without_dirty_tracking(two_hosts: TwoHosts) -> None:
    from amber.adapters import criu

    if criu.dirty_tracking():
        pytest.skip("not applicable here: this kernel tracks dirty memory (pre-copy is not refused)")
    _start(two_hosts, "crun")
    code, err = _migrate(two_hosts, "--pre-copy")
    assert code == 5, err
    assert "does not track dirty memory" in err
    assert _running(two_hosts.a.amber)


SERVER = "mkdir -p /www && echo moved > /www/index.html && httpd -p 8080 -h /www && nc -ll -p 9000 -e cat & " + COUNTER

# The client (in its own namespace): one TCP connection to the container, a line echoed before
# the move; then, told to go on, another line on the same connection.
CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], 9000), timeout=20)
f = s.makefile("rwb")
f.write(b"before\\n"); f.flush()
print(f.readline().decode().strip(), flush=True)
sys.stdin.readline()
f.write(b"after\\n"); f.flush()
print(f.readline().decode().strip(), flush=True)
"""


FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())"


def _in_client(hosts: TwoHosts) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{hosts.client}"]


def _serve(hosts: TwoHosts, runtime: str) -> int:
    hosts.a.amber_cmd(
        "run",
        "-d",
        "--name",
        "cnt",
        "--network",
        "mig",
        "-p",
        "18080:8080",
        "--runtime",
        runtime,
        IMAGE,
        "sh",
        "-c",
        SERVER,
    )
    return amber_counter(hosts.a.amber, "cnt", 5)


def _fetch(hosts: TwoHosts, host: Host) -> str:
    deadline = time.monotonic() + 20
    while True:
        result = run(
            [*_in_client(hosts), sys.executable, "-c", FETCH, f"http://{host.address}:18080/"], check=False, timeout=30
        )
        if result.returncode == 0 or time.monotonic() > deadline:
            return result.stdout.strip()
        time.sleep(0.1)


@MODES
def test_published_port_answers_on_the_destination(two_hosts: TwoHosts, runtime: str, mode: str) -> None:
    _serve(two_hosts, runtime)
    assert _fetch(two_hosts, two_hosts.a) == "moved"
    code, err = _migrate(two_hosts, "--mode", mode)
    assert code == 0, err
    assert _fetch(two_hosts, two_hosts.b) == "moved"


def _route(hosts: TwoHosts, via: Host) -> None:
    run(["ip", "-n", hosts.client, "route", "replace", hosts.subnet, "via", via.address], timeout=30)


@MODES
def test_tcp_connection_survives_with_tcp_established(two_hosts: TwoHosts, runtime: str, mode: str) -> None:
    _serve(two_hosts, runtime)
    ip, _ = _address(two_hosts.a.amber)
    _route(two_hosts, two_hosts.a)
    client = spawn(
        [*_in_client(two_hosts), sys.executable, "-c", CLIENT, ip],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert client.stdout is not None and client.stdin is not None
        assert client.stdout.readline().strip() == b"before"
        code, err = _migrate(two_hosts, "--tcp-established", "--mode", mode)
        assert code == 0, err
        _route(two_hosts, two_hosts.b)  # the container's subnet is now behind B
        client.stdin.write(b"go\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == b"after"
        assert client.wait(timeout=30) == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(timeout=10)


def test_lazy_mode_is_refused_before_the_freeze_without_the_pipe_size(two_hosts: TwoHosts) -> None:
    if int(PIPE_MAX_SIZE.read_text()) >= LAZY_PIPE_MIN:
        pytest.skip("not applicable here: fs.pipe-max-size is already large enough for lazy mode")
    _start(two_hosts, "crun")
    pid = two_hosts.a.amber.fresh_engine().containers.store.get("cnt").pid
    code, err = _migrate(two_hosts, "--mode", "lazy")
    assert code == 5, err  # PreconditionError, on this host, before anything is frozen
    assert f"fs.pipe-max-size >= {LAZY_PIPE_MIN}" in err and "hint:" in err
    assert two_hosts.a.amber.fresh_engine().containers.store.get("cnt").pid == pid  # never frozen nor restored
