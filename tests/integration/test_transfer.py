"""Memory transfer on the real stack, under runc and crun: a dump streamed to a CRIU page server,
and the lazy preflight (one host, 127.0.0.1; the two-host version is migrate's)."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from amber.adapters import criu_transfer
from amber.adapters.checkpoint_archive import list_members
from amber.engine.checkpoint import CheckpointOptions
from amber.engine.restore import RestoreOptions
from amber.engine.transfer import MemoryMode, PageEndpoint, PageReceiver, check_host, dump_to_page_server
from amber.errors import CommandError, PreconditionError
from amber.models import Status
from tests.conftest import Amber
from tests.integration.test_checkpoint import counter, start_counter, wait_counter_above

pytestmark = pytest.mark.root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_page_server_dump_restores_and_counts_on(amber: Amber, demo_image: str, runtime: str, tmp_path: Path) -> None:
    start_counter(amber, demo_image, runtime)
    endpoint = PageEndpoint("127.0.0.1", free_port())
    received = tmp_path / "received"
    with PageReceiver(received, endpoint, tmp_path / "page-server.log") as rx:
        dump_to_page_server(amber.engine.checkpoints, "cnt", endpoint)
        assert rx.finished(60), (tmp_path / "page-server.log").read_text()
    pages = sorted(p.name for p in received.iterdir())
    assert any(name.startswith("pages-") for name in pages), pages
    c = amber.engine.containers.store.get("cnt")
    assert c.status == Status.CHECKPOINTED
    images = amber.engine.containers.paths(c.id).checkpoint
    assert not any(p.name.startswith("pages-") for p in images.iterdir())  # they went to the server
    for page_file in received.iterdir():  # what a migration delivers beside the other images
        shutil.move(str(page_file), images / page_file.name)
    before = counter(amber, "cnt")
    amber.engine.checkpoints.restore("cnt", RestoreOptions())
    assert amber.fresh_engine().containers.store.get("cnt").status == Status.RUNNING
    wait_counter_above(amber, "cnt", before)


@pytest.fixture
def amber_b(tmp_path: Path, demo_rootfs: Path) -> Iterator[Amber]:
    """A second amber root on this host (the destination), with the demo image."""
    b = Amber(tmp_path / "root-b", tmp_path / "run-b")
    b.engine.images.import_image(demo_rootfs, "localhost/demo:latest")
    yield b
    b.cleanup()


def test_page_server_to_another_root_counts_on(
    amber: Amber, amber_b: Amber, demo_image: str, runtime: str, tmp_path: Path
) -> None:
    start_counter(amber, demo_image, runtime)
    endpoint = PageEndpoint("127.0.0.1", free_port())
    rest = tmp_path / "rest.tar.zst"  # the other images: migrate streams them (export_to)
    with PageReceiver(tmp_path / "received", endpoint, tmp_path / "page-server.log") as rx:
        dump_to_page_server(amber.engine.checkpoints, "cnt", endpoint, CheckpointOptions(export=rest))
        names = [m.name for m in list_members(rest)]
        assert "checkpoint/inventory.img" in names and not any(n.startswith("checkpoint/pages-") for n in names)
        before = counter(amber, "cnt")
        amber_b.engine.checkpoints.restore_archive(rest, RestoreOptions(complete_images=rx.deliver))
    assert amber_b.fresh_engine().containers.store.get("cnt").status == Status.RUNNING
    wait_counter_above(amber_b, "cnt", before)


def test_page_server_absent_leaves_source_running(amber: Amber, demo_image: str, runtime: str) -> None:
    start_counter(amber, demo_image, runtime)
    endpoint = PageEndpoint("127.0.0.1", free_port())  # nobody listens there
    with pytest.raises(CommandError, match="CRIU could not checkpoint container cnt"):
        dump_to_page_server(amber.engine.checkpoints, "cnt", endpoint)
    engine = amber.fresh_engine()
    assert engine.containers.refresh(engine.containers.store.get("cnt")).status == Status.RUNNING
    wait_counter_above(amber, "cnt", counter(amber, "cnt"))  # not frozen


def test_lazy_preflight_refuses_low_pipe_max_size() -> None:
    before = criu_transfer.PIPE_MAX_SIZE.read_text()
    try:
        criu_transfer.PIPE_MAX_SIZE.write_text("1048576\n")
        with pytest.raises(PreconditionError, match="fs.pipe-max-size >= 4194304"):
            check_host(MemoryMode.LAZY)
        criu_transfer.PIPE_MAX_SIZE.write_text(f"{criu_transfer.LAZY_PIPE_MIN}\n")
        check_host(MemoryMode.LAZY)  # the rest of the host (CRIU, userfaultfd) is fit
    finally:
        criu_transfer.PIPE_MAX_SIZE.write_text(before)
