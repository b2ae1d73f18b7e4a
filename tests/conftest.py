"""Shared fixtures: temporary amber roots, the demo image, both runtimes, the podman fixtures."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from amber.adapters import mounts
from amber.adapters.run import run
from amber.cli import main
from amber.config import Settings
from amber.engine import Engine, Services, scratch
from amber.engine.demo_image import build_rootfs_tar

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures" / "podman-5.4.2"
RUNTIMES = ("runc", "crun")


STACK_TOOLS = ("criu", "conmon", "runc", "crun")
# In CI (CI=true) a test that skips is a failure: a missing component or fixture must not pass
# quietly. Only a skip whose reason starts with this prefix is allowed there: the test does not
# apply to this host at all (for example a check for kernels that lack a feature).
NOT_APPLICABLE = "not applicable here:"
IN_CI = os.environ.get("CI") == "true"


def have_root() -> bool:
    return os.geteuid() == 0


def have_stack() -> bool:
    return have_root() and all(shutil.which(t) for t in STACK_TOOLS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_root = pytest.mark.skip(reason="needs root (run the tests as root: make test)")
    no_stack = pytest.mark.skip(reason="needs root and runc, crun, CRIU, conmon (run make setup)")
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.stack)
        if "stack" in item.keywords and not have_stack():
            item.add_marker(no_stack)
        elif "root" in item.keywords and not have_root():
            item.add_marker(no_root)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not (IN_CI and report.skipped) or hasattr(report, "wasxfail"):
        return report
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if NOT_APPLICABLE not in reason:
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {reason}"
    return report


class Amber:
    """An amber with its own roots, driven in-process through the CLI or the library."""

    def __init__(self, root: Path, runroot: Path) -> None:
        self.root = root
        self.runroot = runroot
        self.engine = self.fresh_engine()
        self._default_network()

    def _default_network(self) -> None:
        """The root's default network, made on this session's own subnet (tests/subnets.py) so
        that test sessions running at once never route the same one. Nothing for a root that
        has one already, or that cannot be written (a test of unusable roots)."""
        from amber.engine.networks import DEFAULT_NETWORK
        from amber.errors import AmberError
        from tests import subnets

        if self.root.exists() and not self.root.is_dir():
            return
        with contextlib.suppress(AmberError, OSError):
            self.engine.networks.create(DEFAULT_NETWORK, subnets.session_default())

    def __call__(self, *argv: str) -> int:
        return main(["--root", str(self.root), "--runroot", str(self.runroot), *argv])

    def fresh_engine(self, runtime: str | None = None) -> Services:
        """The services behind a new Engine on these roots (tests drive them directly)."""
        settings = Settings(root=self.root, runroot=self.runroot, default_runtime="crun")
        return Engine.from_settings(settings, runtime).services

    def cleanup(self) -> None:
        engine = self.fresh_engine()
        for c in engine.containers.store.all():
            with contextlib.suppress(Exception):
                engine.containers.remove(c.id, force=True)
        if mounts.is_mountpoint(engine.layout.netns):
            mounts.unmount(engine.layout.netns)
        shutil.rmtree(scratch.shm_base(engine.layout), ignore_errors=True)
        with contextlib.suppress(Exception):  # a bridge netavark kept (an interface was still on it)
            for net in engine.networks.list():
                if Path("/sys/class/net", net.bridge).exists():
                    run(["ip", "link", "del", net.bridge], check=False, timeout=30)
        for line in Path("/proc/mounts").read_text().splitlines():
            target = line.split()[1]
            if target.startswith(str(self.root)) or target.startswith(str(self.runroot)):
                with contextlib.suppress(Exception):
                    mounts.unmount(Path(target))


def _links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def _nft_tables() -> str:
    if not have_root() or shutil.which("nft") is None:
        return ""
    return run(["nft", "list", "tables"], check=False, timeout=30).stdout


@pytest.fixture(scope="session", autouse=True)
def host_left_as_found() -> Iterator[None]:
    """The session leaves no bridge of its amber roots behind (other work on the machine may
    make interfaces meanwhile: only this session's are checked), and removes netavark's nft table when
    this session made it and nothing of anyone else's is in it."""
    links, tables = _links(), _nft_tables()
    yield
    if "inet netavark" in _nft_tables() and "inet netavark" not in tables:
        listing = run(["nft", "list", "table", "inet", "netavark"], check=False, timeout=30).stdout
        if "ip saddr" not in listing:  # no network's rules left in it
            run(["nft", "delete", "table", "inet", "netavark"], check=False, timeout=30)
    ours = {"amb" + hashlib.sha256(os.path.abspath(root).encode()).hexdigest()[:5] for root in ROOTS_MADE}
    left = sorted(name for name in _links() - links if name.split("-")[0] in ours)
    assert not left, f"the tests left network bridges behind: {left}"


ROOTS_MADE: list[Path] = []  # every amber root a test made, for the session's leak check


@pytest.fixture
def amber(tmp_path: Path) -> Iterator[Amber]:
    a = Amber(tmp_path / "root", tmp_path / "run")
    ROOTS_MADE.append(a.root)
    yield a
    a.cleanup()


PODMAN_NETWORK, PODMAN_SUBNET = "podman", "10.88.0.0/16"  # what podman's archives recorded
PODMAN_NETWORK_LOCK = Path("/tmp/amber-tests-podman-network.lock")


def _wait_unrouted(subnet: str, timeout: float = 600.0) -> None:
    """Wait until no interface of the host routes `subnet`: podman's own bridge, or a test of a
    checkout without the lock, may have it for a while."""
    import ipaddress
    import time

    from amber.engine import net_alloc

    net, deadline = ipaddress.IPv4Network(subnet), time.monotonic() + timeout
    while any(net.overlaps(r) for r in net_alloc.host_routes()):
        assert time.monotonic() < deadline, f"{subnet} stayed routed on this host for {timeout:.0f} s"
        time.sleep(0.5)


@pytest.fixture
def podman_subnet(amber: Amber) -> Iterator[str]:
    """10.88.0.0/16 (podman's default network) for the test's amber root to make a network of:
    podman's archives restore only onto a network of their recorded subnet. Two tests (of any
    checkout on this host) cannot each have one at once without their bridges routing the same
    subnet, so one test at a time holds it (a file lock); its containers are gone before the
    lock is let go."""
    import fcntl

    with PODMAN_NETWORK_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _wait_unrouted(PODMAN_SUBNET)
            yield PODMAN_SUBNET
        finally:
            amber.cleanup()
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
def podman_network(amber: Amber, podman_subnet: str) -> str:
    """Network podman of podman_subnet in the test's amber root, as podman's archives recorded."""
    assert amber("network", "create", "--subnet", podman_subnet, PODMAN_NETWORK) == 0
    return PODMAN_NETWORK


@pytest.fixture(scope="session")
def demo_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_rootfs_tar(tmp_path_factory.mktemp("demo") / "rootfs.tar")


@pytest.fixture
def demo_image(amber: Amber, demo_rootfs: Path) -> str:
    name = "localhost/demo:latest"
    amber.engine.images.import_image(demo_rootfs, name)
    return name


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def mounts_under(path: Path) -> list[str]:
    return [
        line.split()[1]
        for line in Path("/proc/mounts").read_text().splitlines()
        if line.split()[1].startswith(str(path))
    ]


def drop_page_cache(path: Path) -> None:
    """Write `path` out and drop it from the page cache (what a file long unread looks like).

    POSIX_FADV_DONTNEED leaves pages still held in a CPU's LRU batch: it is asked again until
    the sampled pages are gone (mincore), a bounded number of times."""
    from amber.adapters.direct_io import in_page_cache

    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        size = os.fstat(fd).st_size
        for _ in range(200):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            if size == 0 or not in_page_cache(fd, 0, size, samples=256):
                return
            time.sleep(0.01)
    finally:
        os.close(fd)
