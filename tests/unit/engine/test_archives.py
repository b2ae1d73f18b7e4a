"""amber archive show/inspect/memparse/diff/check on the real podman archives (crun+zstd, runc+none)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from amber.adapters import checkpoint_archive as archive
from amber.adapters.criu_memory import SearchMatch
from amber.adapters.run import run
from amber.cli import main
from amber.config import Layout
from amber.engine.archive_models import CheckStatus, InspectOptions, MemoryDump
from amber.engine.archives import ArchiveService, rfc3339
from amber.errors import AmberError, ArchiveError, ExitCode, NotFoundError
from amber.models import Container, Image
from tests.conftest import FIXTURES

pytest.importorskip("pycriu")
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="podman fixtures missing")

CRUN = FIXTURES / "counter-crun.tar.zst"
RUNC = FIXTURES / "counter-runc.tar"
BOTH = pytest.mark.parametrize("path", [CRUN, RUNC], ids=["crun", "runc"])
LOOP = "sh -c i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.2; done "


class FakeImages:
    def __init__(self, present: dict[str, Image] | None = None) -> None:
        self.present = present or {}

    def get(self, ref: str) -> Image:
        if ref in self.present:
            return self.present[ref]
        raise NotFoundError(f"no such image: {ref}")


class FakeStore:
    def __init__(self, containers: list[Container]) -> None:
        self.containers = containers

    def find(self, ref: str) -> Container | None:
        return next((c for c in self.containers if ref in (c.name, c.id)), None)


class FakeContainers:
    def __init__(self, containers: list[Container] | None = None) -> None:
        self.store = FakeStore(containers or [])


def service(
    tmp_path: Path, images: FakeImages | None = None, containers: FakeContainers | None = None
) -> ArchiveService:
    return ArchiveService(
        Layout(tmp_path / "root", tmp_path / "run"), images or FakeImages(), containers or FakeContainers()
    )


def leftovers(tmp_path: Path) -> list[Path]:
    tmp = tmp_path / "root" / "tmp"
    return list(tmp.iterdir()) if tmp.is_dir() else []


# ===================================== show ===================================================
def test_show_both(tmp_path: Path) -> None:
    crun, runc = service(tmp_path).show([CRUN, RUNC])
    assert (crun.container, crun.runtime, crun.engine, crun.compression) == ("counter-crun", "crun", "Podman", "zstd")
    assert (runc.container, runc.runtime, runc.engine, runc.compression) == ("counter-runc", "runc", "Podman", "none")
    assert crun.image == runc.image == "localhost/busybox:fixture"
    assert runc.created == "2026-11-28T15:17:46Z" and runc.checkpointed == ""  # podman does not record it
    # the numbers checkpointctl prints for these archives
    assert (runc.checkpoint_size, runc.memory_pages_size, runc.rootfs_diff_size) == (173791, 139264, 2048)
    assert (crun.checkpoint_size, crun.memory_pages_size, crun.rootfs_diff_size) == (169606, 135168, 2048)
    assert not crun.amber and crun.to_dict()["engine"] == "Podman"


def test_rfc3339() -> None:
    assert rfc3339("2026-11-28T15:17:46.140631437Z") == "2026-11-28T15:17:46Z"
    assert rfc3339("2026-11-28T15:17:46.1+02:00") == "2026-11-28T15:17:46+02:00"
    assert rfc3339("") == "" and rfc3339("yesterday") == "yesterday"


# ===================================== inspect ================================================
@BOTH
def test_inspect_process_tree(tmp_path: Path, path: Path) -> None:
    ins = service(tmp_path).inspect(path, InspectOptions(ps_tree_cmd=True, ps_tree_env=True))
    root = ins.process_root()
    assert root is not None and (root.pid, root.comm, root.cmdline) == (1, "sh", LOOP)
    assert root.environment is not None and any(v.startswith("PATH=") for v in root.environment)
    assert len(ins.shown_pids()) == 2 and ins.shown_pids()[0] == 1
    tree = ins.to_dict()["process_tree"]
    assert tree["children"][0]["command"] == "sleep" and tree["children"][0]["cmdline"] == "sleep 0.2 "
    assert "PATH" in tree["environment_variables"]
    assert ins.files is None and ins.sockets is None and ins.statistics is None
    assert not leftovers(tmp_path)


@BOTH
def test_inspect_all(tmp_path: Path, path: Path) -> None:
    ins = service(tmp_path).inspect(
        path, InspectOptions(ps_tree=True, files=True, sockets=True, mounts=True, stats=True, metadata=True)
    )
    assert ins.files is not None and ins.sockets == []
    assert {(f.pid, f.label, f.path) for f in ins.files} >= {(1, "REG 0", "/dev/null"), (1, "cwd", "/")}
    assert ins.mounts is not None and any(m.destination == "/proc" and m.type == "proc" for m in ins.mounts)
    assert ins.statistics is not None and ins.statistics.pages_written > 0
    assert ins.metadata is not None and ins.metadata.annotations["io.container.manager"] == "libpod"
    assert ins.networks and ins.networks[0].interface == "eth0"
    root = ins.process_root()
    assert root is not None and root.cmdline is None  # --ps-tree alone does not read memory
    d = ins.to_dict()
    assert d["file_descriptors"][0]["open_files"][0] == {"type": "REG", "fd": "REG 0", "path": "/dev/null"}
    assert "sockets" not in d  # omitted when empty, as checkpointctl does
    json.dumps(d)


def test_inspect_pid_subtree(tmp_path: Path) -> None:
    svc = service(tmp_path)
    child = svc.inspect(RUNC, InspectOptions(ps_tree=True)).to_dict()["process_tree"]["children"][0]["pid"]
    sub = svc.inspect(RUNC, InspectOptions(pid=child, files=True))
    assert sub.shown_pids() == [child]
    assert {f["pid"] for f in sub.to_dict()["file_descriptors"]} == {child}
    with pytest.raises(NotFoundError, match="no process with PID 4242"):
        svc.inspect(RUNC, InspectOptions(pid=4242))


@pytest.mark.stack  # runs checkpointctl as root
@BOTH
@pytest.mark.skipif(shutil.which("checkpointctl") is None, reason="checkpointctl not installed")
def test_json_agrees_with_checkpointctl(tmp_path: Path, path: Path) -> None:
    ours = (
        service(tmp_path)
        .inspect(
            path,
            InspectOptions(
                ps_tree_cmd=True, ps_tree_env=True, files=True, sockets=True, mounts=True, stats=True, metadata=True
            ),
        )
        .to_dict()
    )
    res = run(["checkpointctl", "inspect", str(path), "--all", "--format", "json"], timeout=60)
    theirs = json.loads(res.stdout)[0]

    def same(a: Any, b: Any, where: str) -> None:
        if isinstance(b, dict):
            assert isinstance(a, dict), where
            for key in b:
                assert key in a, f"{where}/{key} missing"
                same(a[key], b[key], f"{where}/{key}")
        elif isinstance(b, list):
            assert isinstance(a, list) and len(a) == len(b), where
            for i, (x, y) in enumerate(zip(a, b, strict=True)):
                same(x, y, f"{where}[{i}]")
        else:
            assert a == b, where

    same(ours, theirs, "")


# ===================================== memparse ===============================================
@BOTH
def test_memparse_sizes(tmp_path: Path, path: Path) -> None:
    table = service(tmp_path).memory_sizes(path)
    sizes = {m.pid: m for m in table}
    assert service(tmp_path).memparse(path) == table
    assert sizes[1].name == "sh" and sizes[1].memory_size > 0 and sizes[1].shared_memory_size == 0
    assert sum(m.memory_size for m in sizes.values()) == service(tmp_path).show([path])[0].memory_pages_size


@BOTH
def test_memparse_search_and_dump(tmp_path: Path, path: Path) -> None:
    svc = service(tmp_path)
    found = svc.memparse(path, pid=1, search="counter", context=5)
    assert isinstance(found, list) and found and all(isinstance(m, SearchMatch) for m in found)
    assert any("/tmp/counter" in m.context for m in found)  # type: ignore[union-attr]
    everywhere = svc.memory_search(path, search_regex=r"HOSTNAME=[0-9a-f]{12}")
    assert {m.pid for m in everywhere} == set(svc.inspect(path, InspectOptions(ps_tree=True)).shown_pids())
    dump = svc.memparse(path, pid=1)
    assert isinstance(dump, MemoryDump) and dump.rows[0].address > 0 and dump.name == "sh"
    out = tmp_path / "pages.bin"
    raw = svc.memparse(path, pid=1, output=out)
    assert isinstance(raw, MemoryDump) and raw.bytes_written == out.stat().st_size > 0
    assert b"/tmp/counter" in out.read_bytes()
    assert sum(r.size for r in raw.regions) == raw.bytes_written
    with pytest.raises(NotFoundError, match="PID 999"):
        svc.memparse(path, pid=999)
    with pytest.raises(AmberError, match="not a valid regular expression"):
        svc.memparse(path, search_regex="(")
    assert not leftovers(tmp_path)


# ===================================== diff ===================================================
def test_diff(tmp_path: Path) -> None:
    svc = service(tmp_path)
    same = svc.diff(RUNC, RUNC)
    assert not same.changed and same.processes_unchanged
    d = svc.diff(CRUN, RUNC)
    assert d.changed
    assert [p.comm for p in d.processes_added] == ["sleep"] and [p.comm for p in d.processes_removed] == ["sleep"]
    assert d.files_added and d.files_removed  # pipes have other inodes
    assert json.loads(json.dumps(d.to_dict()))["memory"]["total_b"] == 139264


# ===================================== check ==================================================
def test_check_runtime_mismatch(tmp_path: Path) -> None:
    results = {r.name: r for r in service(tmp_path).check(CRUN, runtime="runc", kernel=False)}
    assert results["runtime"].status is CheckStatus.FAIL
    assert (
        "archive was created with runtime 'crun' and cannot be restored with runtime 'runc'"
        in results["runtime"].reason
    )
    assert (
        results["image"].failed and "amber image import ROOTFS.tar localhost/busybox:fixture" in results["image"].hint
    )
    assert results["name"].status is CheckStatus.OK


def test_check_image_present_and_name_taken(tmp_path: Path) -> None:
    image = Image(id="29747ca94ec7" + "0" * 52, names=["localhost/busybox:fixture"], layers=[], created="", size=0)
    other = Container(
        id="ab" * 32,
        name="counter-runc",
        image_id="",
        image_name="",
        runtime="runc",
        runtime_path="",
        command=[],
        created="",
    )
    svc = service(tmp_path, FakeImages({"localhost/busybox:fixture": image}), FakeContainers([other]))
    results = {r.name: r for r in svc.check(RUNC, kernel=False)}
    assert results["image"].status is CheckStatus.OK
    assert results["name"].status is CheckStatus.WARN and "--name" in results["name"].hint
    assert results["cpu"].status is CheckStatus.OK  # podman archives carry no cpuinfo.img
    assert {r.name: r for r in svc.check(RUNC, name="counter-runc", kernel=False)}["name"].failed
    assert {r.name: r for r in svc.check(RUNC, name="fresh", kernel=False)}["name"].status is CheckStatus.OK


@pytest.mark.root
def test_check_runs_criu(tmp_path: Path) -> None:
    results = {r.name: r for r in service(tmp_path).check(RUNC)}
    assert results["kernel"].status is CheckStatus.OK
    assert results["runtime"].status is CheckStatus.OK and "runc" in results["runtime"].reason
    assert results["criu-version"].status is CheckStatus.OK


# ===================================== amber's own archives ===================================
@pytest.mark.root  # extracts with the archive's owners (chown)
def test_amber_archive_reads_only_the_head(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = tmp_path / "bundle"
    archive.extract_members(
        RUNC, bundle, lambda n: n.startswith("checkpoint") or n in ("stats-dump", "rootfs-diff.tar")
    )
    head = archive.read_head(RUNC)
    manifest = {
        "schema_version": 1,
        "criu_version": "4.2.1",
        "sizes": {"checkpoint": 173791, "memory_pages": 139264, "rootfs_diff": 2048},
    }
    out = tmp_path / "amber.tar.zst"
    archive.write_archive(
        out,
        bundle,
        ["stats-dump", "checkpoint", "rootfs-diff.tar"],
        archive.Compression.ZSTD,
        head={
            archive.AMBER_MANIFEST: json.dumps(manifest).encode(),
            archive.CONFIG_DUMP: json.dumps(head.config).encode(),
            archive.SPEC_DUMP: json.dumps(head.spec).encode(),
        },
    )

    def no_listing(path: Path) -> list[Any]:
        raise AssertionError("list_members must not be needed for an amber archive")

    monkeypatch.setattr(archive, "list_members", no_listing)
    svc = service(tmp_path)
    summary = svc.show([out])[0]
    assert summary.amber and summary.checkpoint_size == 173791 and summary.runtime == "runc"
    ins = svc.inspect(out, InspectOptions(ps_tree_cmd=True, files=True))
    root = ins.process_root()
    assert root is not None and root.cmdline == LOOP
    crit = {r.name: r for r in svc.check(out, kernel=False)}["criu-version"]
    assert crit.status is CheckStatus.OK and "4.2.1" in crit.reason


# ===================================== damaged archives =======================================
@BOTH
def test_truncated_archive_is_an_amber_error(tmp_path: Path, path: Path) -> None:
    data = path.read_bytes()
    cut = tmp_path / f"cut-{path.name}"
    cut.write_bytes(data[: len(data) // 2])
    svc = service(tmp_path)
    calls: list[Callable[[], object]] = [
        lambda: svc.show([cut]),
        lambda: svc.inspect(
            cut,
            InspectOptions(
                ps_tree_cmd=True, ps_tree_env=True, files=True, sockets=True, stats=True, mounts=True, metadata=True
            ),
        ),
        lambda: svc.memparse(cut),
        lambda: svc.memparse(cut, pid=1, search="counter"),
        lambda: svc.diff(cut, path),
        lambda: svc.check(cut, kernel=False),
    ]
    for call in calls:
        try:
            call()
        except AmberError as exc:
            assert str(cut) in exc.message or "cut-" in exc.message
    assert not leftovers(tmp_path)
    with pytest.raises(ArchiveError):
        svc.inspect(cut, InspectOptions(ps_tree_cmd=True))


def test_not_an_archive(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.tar"
    bogus.write_bytes(os.urandom(2048))
    with pytest.raises(ArchiveError):
        service(tmp_path).inspect(bogus, InspectOptions(ps_tree=True))
    with pytest.raises(NotFoundError):
        service(tmp_path).show([tmp_path / "missing.tar"])


# ===================================== CLI ====================================================
def cli(tmp_path: Path, *argv: str) -> int:
    return main(["--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run"), "archive", *argv])


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(tmp_path, "show", str(CRUN), str(RUNC)) == 0
    out = capsys.readouterr().out
    assert "counter-crun" in out and "Podman" in out and "zstd" in out
    assert cli(tmp_path, "inspect", str(CRUN), "--all") == 0
    out = capsys.readouterr().out
    assert "├── Process tree" in out and f"[1]  {LOOP}" in out and "[REG 0]  /dev/null" in out
    assert "Memwrite time:" in out and "Overview of mounts" in out
    assert cli(tmp_path, "inspect", str(RUNC), "--ps-tree", "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)[0]["process_tree"]["command"] == "sh"
    assert cli(tmp_path, "memparse", str(RUNC)) == 0
    assert "SHARED MEMORY SIZE" in capsys.readouterr().out
    assert cli(tmp_path, "memparse", str(RUNC), "--pid", "1") == 0
    assert "|H...H......H..t.|" in capsys.readouterr().out
    assert cli(tmp_path, "memparse", str(RUNC), "-p", "1", "-s", "counter", "-c", "3") == 0
    assert "mp/counter; s" in capsys.readouterr().out
    assert cli(tmp_path, "diff", str(CRUN), str(RUNC), "--format", "json") == 0
    assert json.loads(capsys.readouterr().out)["changed"] is True
    assert cli(tmp_path, "check", str(CRUN), "--runtime", "runc") == ExitCode.ERROR
    captured = capsys.readouterr()
    assert "cannot be restored with runtime 'runc'" in captured.out and "hint (runtime)" in captured.err
    assert cli(tmp_path, "inspect", str(RUNC), "--pid", "77") == ExitCode.NOT_FOUND
    assert "no process with PID 77" in capsys.readouterr().err


@BOTH
def test_a_criu_that_gives_no_version_is_not_called_older(
    tmp_path: Path, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CRIU that answers `--version` with nothing (broken, stopped, not CRIU) is named as such,
    not as an older CRIU to upgrade (issue 10, case 7: the wrong blame)."""
    from amber.adapters import criu
    from amber.engine import archive_checks

    monkeypatch.setattr(criu, "version", lambda: ())
    row = archive_checks.check_criu(archive.read_head(path), None)
    assert row.status is CheckStatus.FAIL and "did not report its version" in row.reason, row
    assert "older" not in row.reason and "criu check" in row.hint
