"""Checkpoint and restore on the real stack, under runc and crun, with amber's and podman's archives."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import pytest
import zstandard

from amber.adapters import runtime as runtimes
from amber.adapters.checkpoint_archive import list_members, read_head
from amber.adapters.run import run
from amber.errors import ExitCode
from amber.models import Status
from tests.conftest import FIXTURES, Amber, drop_page_cache, mounts_under

pytestmark = pytest.mark.root

# The counter is written beside and renamed into place, so a checkpoint never sees it empty.
COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /tmp/counter.new; mv /tmp/counter.new /tmp/counter; sleep 0.1; done"


def counter(amber: Amber, name: str) -> int:
    c = amber.fresh_engine().containers.store.get(name)
    text = (amber.engine.containers.paths(c.id).upper / "tmp" / "counter").read_text().strip()
    return int(text or "0")


def wait_counter_above(amber: Amber, name: str, value: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            now = counter(amber, name)
        except (OSError, ValueError):
            now = -1
        if now > value:
            return now
        time.sleep(0.05)
    raise AssertionError(f"counter of {name} did not go above {value}")


def start_counter(amber: Amber, image: str, runtime: str, name: str = "cnt") -> None:
    amber.engine.containers.run(image, ["sh", "-c", COUNTER], name=name, runtime_name=runtime)
    wait_counter_above(amber, name, 3)


def zstd_frames(path: Path) -> int:
    """How many zstd frames the file holds, one after the other."""
    data, frames = path.read_bytes(), 0
    while data:
        dec = zstandard.ZstdDecompressor().decompressobj()
        dec.decompress(data)
        data, frames = dec.unused_data, frames + 1
    return frames


def pid1_is_shell(amber: Amber, name: str, capfd: pytest.CaptureFixture[str]) -> bool:
    capfd.readouterr()
    assert amber("exec", name, "cat", "/proc/1/cmdline") == 0
    return capfd.readouterr().out.startswith("sh\0-c\0i=0")


@pytest.mark.parametrize("compress", ["zstd", "gzip", "none"])
def test_export_import_counter_goes_on(
    amber: Amber, demo_image: str, runtime: str, compress: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    start_counter(amber, demo_image, runtime)
    archive = tmp_path / "cnt.tar"
    assert amber("checkpoint", "--export", str(archive), "--compress", compress, "cnt") == 0
    assert amber.fresh_engine().containers.store.get("cnt").status == Status.CHECKPOINTED
    assert archive.stat().st_mode & 0o777 == 0o600
    at_checkpoint = counter(amber, "cnt")
    head = read_head(archive)
    assert head.compression == compress
    assert head.config["runtime"] == runtime and head.config["name"] == "cnt"
    names = [m.name for m in list_members(archive)]
    assert names[:3] == ["amber.manifest", "config.dump", "spec.dump"]
    assert "checkpoint/" in names or "checkpoint" in names
    assert "checkpoint/inventory.img" in names and "rootfs-diff.tar" in names and "stats-dump" in names
    if compress == "zstd":  # each process's pages were compressed during the dump, into a frame of their own
        pages = [n for n in names if n.startswith("checkpoint/pages-")]
        assert pages and zstd_frames(archive) == 1 + 2 * len(pages)
    assert amber("rm", "-f", "cnt") == 0
    assert amber("restore", "--import", str(archive)) == 0
    c = amber.fresh_engine().containers.store.get("cnt")
    assert c.status == Status.RUNNING and c.runtime == runtime and c.restored
    assert pid1_is_shell(amber, "cnt", capfd)
    restored = counter(amber, "cnt")
    assert restored >= at_checkpoint
    wait_counter_above(amber, "cnt", restored)
    assert restored > 3  # it went on from its value, it did not start again at 1


def test_wrong_runtime_refused_before_anything(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start_counter(amber, demo_image, runtime)
    archive = tmp_path / "cnt.tar.zst"
    assert amber("checkpoint", "-e", str(archive), "cnt") == 0
    assert amber("rm", "cnt") == 0
    other = "crun" if runtime == "runc" else "runc"
    before = sorted(os.listdir(amber.root / "containers"))
    capsys.readouterr()
    started = time.monotonic()
    assert amber("restore", "--import", str(archive), "--runtime", other) == ExitCode.RUNTIME_MISMATCH
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert (
        f"error: checkpoint archive {archive} was created with runtime '{runtime}' "
        f"and cannot be restored with runtime '{other}'"
    ) in err
    assert f"hint: leave out --runtime, or give {runtime}" in err
    assert sorted(os.listdir(amber.root / "containers")) == before
    assert mounts_under(amber.root / "containers") == []
    print(f"refusal took {elapsed:.3f} s")
    # The same runtime, spelled as a path or through a symlink, is accepted.
    link = tmp_path / "my-runtime"
    link.symlink_to(runtimes.resolve(runtime).path)
    assert amber("--runtime", str(link), "restore", "--import", str(archive)) == 0
    assert amber.fresh_engine().containers.store.get("cnt").runtime == runtime


def test_leave_running_and_a_second_copy(amber: Amber, demo_image: str, runtime: str, tmp_path: Path) -> None:
    start_counter(amber, demo_image, runtime)
    archive = tmp_path / "cnt.tar.zst"
    assert amber("checkpoint", "-R", "-e", str(archive), "cnt") == 0
    assert amber.fresh_engine().containers.inspect_record("cnt").status == Status.RUNNING
    assert amber("restore", "-i", str(archive), "--name", "copy") == 0
    both = {c.name: c for c in amber.fresh_engine().containers.list()}
    assert set(both) == {"cnt", "copy"}
    assert both["copy"].id != both["cnt"].id
    wait_counter_above(amber, "copy", counter(amber, "copy"))
    wait_counter_above(amber, "cnt", counter(amber, "cnt"))


def test_local_checkpoint_and_restore(amber: Amber, demo_image: str, runtime: str) -> None:
    start_counter(amber, demo_image, runtime)
    assert amber("container", "checkpoint", "cnt") == 0
    assert amber.fresh_engine().containers.store.get("cnt").status == Status.CHECKPOINTED
    frozen = counter(amber, "cnt")
    assert amber("container", "restore", "cnt") == 0
    assert amber.fresh_engine().containers.inspect_record("cnt").status == Status.RUNNING
    now = counter(amber, "cnt")
    assert now >= frozen
    wait_counter_above(amber, "cnt", now)


def test_cycles(amber: Amber, demo_image: str, runtime: str, tmp_path: Path) -> None:
    start_counter(amber, demo_image, runtime)
    last = counter(amber, "cnt")
    name = "cnt"
    for i in range(3):
        archive = tmp_path / f"cycle-{i}.tar.zst"
        assert amber("checkpoint", "-e", str(archive), name) == 0
        assert amber("rm", name) == 0
        new = name if i % 2 == 0 else f"cnt{i}"
        args = ["restore", "-i", str(archive)] + (["--name", new] if new != name else [])
        assert amber(*args) == 0
        name = new
        value = counter(amber, name)
        assert value >= last
        last = wait_counter_above(amber, name, value)


def test_pre_checkpoint_refused_without_dirty_tracking(
    amber: Amber, demo_image: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from amber.adapters import criu

    if criu.dirty_tracking():
        pytest.skip("not applicable here: this kernel tracks dirty memory")
    start_counter(amber, demo_image, "crun")
    capsys.readouterr()
    assert amber("checkpoint", "--pre-checkpoint", "cnt") == ExitCode.PRECONDITION
    assert "dirty memory" in capsys.readouterr().err
    assert amber.fresh_engine().containers.inspect_record("cnt").status == Status.RUNNING


def test_failed_dump_leaves_container_running(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An unlinked open file bigger than CRIU's ghost limit (1 MiB) cannot be dumped.
    script = "dd if=/dev/zero of=/tmp/big bs=1M count=4 2>/dev/null; exec 3</tmp/big; rm /tmp/big; " + COUNTER
    amber.engine.containers.run(demo_image, ["sh", "-c", script], name="ghost", runtime_name=runtime)
    wait_counter_above(amber, "ghost", 3)
    archive = tmp_path / "ghost.tar.zst"
    capsys.readouterr()
    assert amber("checkpoint", "-e", str(archive), "ghost") == ExitCode.ERROR
    err = capsys.readouterr().err
    assert "error: CRIU could not checkpoint container ghost" in err
    assert "dump.log" in err and "hint:" in err
    assert not archive.exists()
    assert list(tmp_path.glob("ghost.tar.zst*")) == []
    assert amber.fresh_engine().containers.inspect_record("ghost").status == Status.RUNNING
    wait_counter_above(amber, "ghost", counter(amber, "ghost"))


def test_restore_errors_change_nothing(
    amber: Amber, demo_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.tar"
    assert amber("restore", "-i", str(missing)) == ExitCode.NOT_FOUND
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(os.urandom(4096))
    assert amber("restore", "-i", str(garbage)) == ExitCode.BAD_ARCHIVE
    start_counter(amber, demo_image, "crun")
    archive = tmp_path / "cnt.tar.zst"
    assert amber("checkpoint", "-R", "-e", str(archive), "cnt") == 0
    capsys.readouterr()
    assert amber("restore", "-i", str(archive)) == ExitCode.CONFLICT  # the name is in use
    assert "--name" in capsys.readouterr().err
    other = Amber(tmp_path / "other-root", tmp_path / "other-run")
    try:
        assert other("restore", "-i", str(archive)) == ExitCode.NOT_FOUND  # no image there
        err = capsys.readouterr().err
        assert "localhost/demo:latest" in err and "amber image import" in err
        assert not (other.root / "containers").exists() or os.listdir(other.root / "containers") == []
    finally:
        other.cleanup()


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="podman fixtures not present")
@pytest.mark.parametrize("fixture", ["counter-crun.tar.zst", "counter-runc.tar"])
def test_podman_archives_restore_and_count(amber: Amber, fixture: str, podman_network: str) -> None:
    assert amber("image", "import", str(FIXTURES / "busybox-rootfs.tar"), "localhost/busybox:fixture") == 0
    assert amber("restore", "--import", str(FIXTURES / fixture)) == 0
    head = read_head(FIXTURES / fixture)
    c = amber.fresh_engine().containers.store.get(head.config["name"])
    assert c.status == Status.RUNNING
    assert c.runtime == fixture.split("-")[1].split(".")[0]
    value = counter(amber, c.name)
    assert value > 1  # it goes on from the value podman checkpointed, not from 1
    wait_counter_above(amber, c.name, value)


@pytest.mark.skipif(shutil.which("checkpointctl") is None, reason="checkpointctl not installed")
def test_checkpointctl_reads_amber_archives(amber: Amber, demo_image: str, runtime: str, tmp_path: Path) -> None:
    start_counter(amber, demo_image, runtime)
    archive = tmp_path / "cnt.tar.zst"
    assert amber("checkpoint", "-e", str(archive), "cnt") == 0
    out = run(["checkpointctl", "show", str(archive)], timeout=60).stdout
    row = next(line for line in out.splitlines() if line.startswith("| cnt "))
    assert demo_image in row and runtime in row and "Podman" in row
    data = json.loads(run(["checkpointctl", "inspect", str(archive), "--all", "--format", "json"], timeout=60).stdout)
    entry = data[0] if isinstance(data, list) else data
    assert entry["container_name"] == "cnt" and entry["runtime"] == runtime


# A shell holding 12 MB in a variable, then counting: its page image is big enough (PLACE_AFTER)
# to go into the archive file while CRIU dumps it.
BIG_COUNTER = "v=$(head -c 12000000 /dev/zero | tr '\\0' a); " + COUNTER


@pytest.mark.parametrize("compress", ["zstd", "none"])
def test_export_to_a_file_puts_the_pages_in_place(
    amber: Amber, demo_image: str, runtime: str, compress: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The big page image goes into the archive file during the dump (archive_inplace); the
    archive restores, and Go's archive/tar (checkpointctl) reads its padding (PAX comment, zstd
    skippable frame)."""
    amber.engine.containers.run(demo_image, ["sh", "-c", BIG_COUNTER], name="big", runtime_name=runtime)
    wait_counter_above(amber, "big", 3)
    archive = tmp_path / "big.tar"
    caplog.set_level(logging.DEBUG, logger="amber.archive")
    assert amber("checkpoint", "--export", str(archive), "--compress", compress, "big") == 0
    placed = [r.getMessage() for r in caplog.records if "was written in place" in r.getMessage()]
    assert len(placed) == 1 and "/checkpoint/pages-" in placed[0], placed
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left
    names = [m.name for m in list_members(archive)]
    assert names[:3] == ["amber.manifest", "config.dump", "spec.dump"]
    assert "checkpoint/inventory.img" in names and "rootfs-diff.tar" in names
    out = run(["checkpointctl", "show", str(archive)], timeout=60).stdout
    assert any(line.startswith("| big ") and runtime in line for line in out.splitlines()), out
    at_checkpoint = counter(amber, "big")
    assert amber("rm", "-f", "big") == 0
    assert amber("restore", "--import", str(archive)) == 0
    c = amber.fresh_engine().containers.store.get("big")
    assert c.status == Status.RUNNING and c.runtime == runtime and c.restored
    restored = counter(amber, "big")
    assert restored >= at_checkpoint > 3
    wait_counter_above(amber, "big", restored)


def test_files_not_in_the_page_cache_are_read_past_it(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path
) -> None:
    """A container's big file not cached at export, and a zstd archive not cached at import, are
    read with O_DIRECT (direct_io): the file comes back whole and the counter goes on."""
    from amber.adapters.direct_io import in_page_cache

    script = "dd if=/dev/urandom of=/big bs=1048576 count=8 2>/dev/null && " + COUNTER
    amber.engine.containers.run(demo_image, ["sh", "-c", script], name="cold", runtime_name=runtime)
    wait_counter_above(amber, "cold", 3)
    big = amber.engine.containers.paths(amber.fresh_engine().containers.store.get("cold").id).upper / "big"
    data = big.read_bytes()
    drop_page_cache(big)
    archive = tmp_path / "cold.tar.zst"
    assert amber("checkpoint", "--export", str(archive), "--compress", "zstd", "cold") == 0
    at_checkpoint = counter(amber, "cold")
    assert amber("rm", "-f", "cold") == 0
    drop_page_cache(archive)
    fd = os.open(archive, os.O_RDONLY)
    try:
        assert not in_page_cache(fd, 0, archive.stat().st_size)  # else this test proves nothing
    finally:
        os.close(fd)
    assert amber("restore", "--import", str(archive)) == 0
    restored = amber.engine.containers.paths(amber.fresh_engine().containers.store.get("cold").id).upper / "big"
    assert restored.read_bytes() == data
    assert wait_counter_above(amber, "cold", at_checkpoint) > at_checkpoint


@pytest.mark.parametrize("compress", ["zstd", "none"])
def test_rootfs_diff_is_applied_in_place_deletions_first(
    amber: Amber, demo_image: str, runtime: str, compress: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The rootfs diff is never copied into the work area: a zstd archive's is unpacked onto the
    root as the archive is read (its deleted.files comes first), a plain one's read where it lies.
    A file the image had and the container deleted stays deleted; one it made again comes back."""
    script = "rm /etc/motd && rm /etc/group && echo again > /etc/group && mkdir -p /data && echo hi > /data/f && "
    amber.engine.containers.run(demo_image, ["sh", "-c", script + COUNTER], name="diff", runtime_name=runtime)
    wait_counter_above(amber, "diff", 3)
    archive = tmp_path / "diff.tar"
    assert amber("checkpoint", "--export", str(archive), "--compress", compress, "diff") == 0
    names = [m.name for m in list_members(archive)]
    assert names.index("deleted.files") < names.index("rootfs-diff.tar")
    manifest = read_head(archive).amber_manifest
    assert manifest is not None and manifest.deleted_files_first
    at_checkpoint = counter(amber, "diff")
    assert amber("rm", "-f", "diff") == 0
    caplog.set_level(logging.DEBUG, logger="amber.timing")
    assert amber("restore", "--import", str(archive)) == 0
    steps = [r.getMessage() for r in caplog.records if "apply rootfs diff" in r.getMessage()]
    assert len(steps) == 1 and ("streamed from the archive" in steps[0]) == (compress == "zstd"), steps
    merged = amber.engine.containers.paths(amber.fresh_engine().containers.store.get("diff").id).merged
    assert not (merged / "etc" / "motd").exists()
    assert (merged / "etc" / "group").read_text() == "again\n"
    assert (merged / "data" / "f").read_text() == "hi\n"
    assert wait_counter_above(amber, "diff", at_checkpoint) > at_checkpoint
