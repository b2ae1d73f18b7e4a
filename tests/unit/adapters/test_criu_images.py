"""Decoding CRIU images: on the real podman fixtures, and on images made here with pycriu."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from amber.adapters import checkpoint_archive as archive
from amber.adapters import criu_files as cf
from amber.adapters import criu_images as ci
from amber.adapters import criu_memory as cm
from amber.errors import ArchiveError
from tests.conftest import FIXTURES

pycriu = pytest.importorskip("pycriu")

ARCHIVES = {"crun": FIXTURES / "counter-crun.tar.zst", "runc": FIXTURES / "counter-runc.tar"}
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason="podman fixtures missing")


@pytest.fixture(scope="module", params=sorted(ARCHIVES))
def dump(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    dest = tmp_path_factory.mktemp(f"dump-{request.param}")
    archive.extract_members(ARCHIVES[request.param], dest, lambda n: n.startswith("checkpoint/") or n == "stats-dump")
    return request.param, dest


def images(dest: Path) -> ci.ImageDir:
    return ci.ImageDir(dest / "checkpoint", "fixture.tar")


def test_process_tree(dump: tuple[str, Path]) -> None:
    _, dest = dump
    procs = ci.read_processes(images(dest))
    root = ci.root_process(procs)
    assert (root.pid, root.ppid, root.comm, root.task_state) == (1, 0, "sh", "Alive")
    kids = ci.children(procs, 1)
    assert [k.comm for k in kids] == ["sleep"]
    assert kids[0].threads == (kids[0].pid,)
    assert root.cmdline is None and root.environment is None  # not read unless asked


def test_cmdline_and_environment(dump: tuple[str, Path]) -> None:
    _, dest = dump
    d = images(dest)
    procs = [cm.read_args(d, p, cmdline=True, env=True) for p in ci.read_processes(d)]
    sh = ci.root_process(procs)
    assert sh.cmdline == "sh -c i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.2; done "
    assert sh.argv[:2] == ["sh", "-c"]
    assert sh.environment is not None
    assert any(v.startswith("PATH=") for v in sh.environment)
    sleep = ci.children(procs, 1)[0]
    assert sleep.cmdline == "sleep 0.2 "
    assert sleep.environment is not None and "PWD=/" in sleep.environment
    only_env = cm.read_args(d, ci.read_processes(d)[0], cmdline=False, env=True)
    assert only_env.cmdline is None and only_env.environment


def test_open_files(dump: tuple[str, Path]) -> None:
    _, dest = dump
    d = images(dest)
    procs = ci.read_processes(d)
    files = cf.read_files(d, procs)
    mine = {f.fd: f for f in files if f.pid == 1}
    assert (mine["0"].type, mine["0"].path, mine["0"].label) == ("REG", "/dev/null", "REG 0")
    assert mine["1"].type == "PIPE" and re.fullmatch(r"pipe\[\d+\]", mine["1"].path)
    assert (mine["cwd"].path, mine["root"].path, mine["cwd"].label) == ("/", "/", "cwd")
    # /tmp/counter is opened by `echo > /tmp/counter` only for an instant: not open at the dump
    assert not any("/tmp/counter" in f.path for f in files)
    assert {f.pid for f in files} == {p.pid for p in procs}


def test_no_sockets_in_fixtures(dump: tuple[str, Path]) -> None:
    _, dest = dump
    d = images(dest)
    assert cf.read_sockets(d, ci.read_processes(d)) == []


def test_dump_stats(dump: tuple[str, Path]) -> None:
    runtime, dest = dump
    stats = ci.read_dump_stats(dest / "stats-dump", "fixture")
    assert stats is not None
    assert stats.pages_written > 0 and stats.freezing_time > 0
    assert "page_pipes" in stats.extra
    assert ci.read_dump_stats(dest / "nope", "fixture") is None


def test_memory(dump: tuple[str, Path]) -> None:
    _, dest = dump
    d = images(dest)
    pagemap = cm.read_pagemap(d, 1)
    assert pagemap is not None
    assert pagemap.memory_size == (dest / "checkpoint" / cm.pages_file(pagemap)).stat().st_size
    assert cm.shared_memory_size(d, 1) == 0
    with cm.PageReader(d, pagemap) as reader:
        rows = list(cm.hexdump(reader))
        assert rows[0].address == pagemap.entries[0].vaddr and len(rows[0].hex.split()) == 16
        assert any(r.repeated for r in rows)
        found = cm.search(reader, re.compile(re.escape(b"/tmp/counter")), context=4)
        assert found and all(m.match == "/tmp/counter" for m in found)
        assert all(len(m.context) <= len("/tmp/counter") + 8 for m in found)
        # reading a range that starts in a hole gives zeros for the hole
        first = pagemap.entries[0]
        data = reader.read(first.vaddr - 16, first.vaddr + 16)
        assert data[:16] == bytes(16)
        assert data[16:] == bytes.fromhex(rows[0].hex.replace(" ", ""))


def _write(path: Path, img: dict[str, object]) -> None:
    path.write_bytes(pycriu.images.dumps(img))


FOWN = {"uid": 0, "euid": 0, "signum": 0, "pid_type": 0, "pid": 0}
OPTS = {
    "so_sndbuf": 212992,
    "so_rcvbuf": 131072,
    "so_snd_tmo_sec": 0,
    "so_snd_tmo_usec": 0,
    "so_rcv_tmo_sec": 0,
    "so_rcv_tmo_usec": 0,
}


def test_sockets_decoded(tmp_path: Path) -> None:
    _write(
        tmp_path / "pstree.img",
        {"magic": "PSTREE", "entries": [{"pid": 1, "ppid": 0, "pgid": 1, "sid": 1, "threads": [1]}]},
    )
    _write(
        tmp_path / "ids-1.img", {"magic": "IDS", "entries": [{"vm_id": 1, "files_id": 5, "fs_id": 1, "sighand_id": 1}]}
    )
    _write(
        tmp_path / "fdinfo-5.img",
        {
            "magic": "FDINFO",
            "entries": [
                {"id": 3, "flags": 0, "type": "INETSK", "fd": 3},
                {"id": 4, "flags": 0, "type": "UNIXSK", "fd": 4},
                {"id": 6, "flags": 0, "type": "INETSK", "fd": 5},
            ],
        },
    )
    _write(
        tmp_path / "files.img",
        {
            "magic": "FILES",
            "entries": [
                {
                    "type": "INETSK",
                    "id": 3,
                    "isk": {
                        "id": 3,
                        "ino": 100,
                        "family": 2,
                        "type": 1,
                        "proto": 6,
                        "state": 10,
                        "src_port": 8080,
                        "dst_port": 0,
                        "flags": 2,
                        "backlog": 128,
                        "src_addr": [0x0100007F],
                        "dst_addr": [0],
                        "fown": FOWN,
                        "opts": OPTS,
                    },
                },
                {
                    "type": "UNIXSK",
                    "id": 4,
                    "usk": {
                        "id": 4,
                        "ino": 200,
                        "type": 2,
                        "state": 7,
                        "flags": 0,
                        "uflags": 0,
                        "backlog": 0,
                        "peer": 0,
                        "fown": FOWN,
                        "opts": OPTS,
                        "name": b"\0abstract=x",
                    },
                },
                {
                    "type": "INETSK",
                    "id": 6,
                    "isk": {
                        "id": 6,
                        "ino": 101,
                        "family": 10,
                        "type": 1,
                        "proto": 6,
                        "state": 1,
                        "src_port": 443,
                        "dst_port": 51000,
                        "flags": 2,
                        "backlog": 0,
                        "src_addr": [0, 0, 0, 0x01000000],
                        "dst_addr": [0xFE, 0, 0, 0x02000000],
                        "fown": FOWN,
                        "opts": OPTS,
                    },
                },
            ],
        },
    )
    d = ci.ImageDir(tmp_path, "synthetic")
    procs = ci.read_processes(d)
    assert procs[0].comm == "" and procs[0].task_state.startswith("Unknown")  # no core image: tolerated
    procs = [ci.Process(1, 0, 1, 1, (1,), "srv", "Alive")]
    inet, unix, inet6 = cf.read_sockets(d, procs)
    assert (inet.protocol, inet.state, inet.src, inet.src_port, inet.family) == (
        "TCP",
        "LISTEN",
        "127.0.0.1",
        8080,
        "IPV4",
    )
    assert (inet.send_buf, inet.recv_buf) == (212992, 131072)
    assert (unix.kind, unix.type, unix.src) == ("UNIXSK", "DGRAM", "@abstract=x")
    assert (inet6.src, inet6.dst, inet6.state, inet6.dst_port) == ("::1", "fe00::2", "ESTABLISHED", 51000)
    files = cf.read_files(d, procs)  # no fs-1.img: no cwd/root, but no error
    assert [f.path for f in files][1] == "unix[200 (0) @abstract=x]"


def test_pagemap_nr_pages_and_compat(tmp_path: Path) -> None:
    _write(
        tmp_path / "pagemap-1.img",
        {
            "magic": "PAGEMAP",
            "entries": [
                {"pages_id": 7},
                {"vaddr": 4096, "compat_nr_pages": 1, "nr_pages": 3, "flags": 4},
                {"vaddr": 65536, "compat_nr_pages": 2, "flags": 1},
            ],
        },
    )
    pm = cm.read_pagemap(ci.ImageDir(tmp_path, "x"), 1)
    assert pm is not None and pm.pages_id == 7
    assert [(e.nr_pages, e.in_pages_file) for e in pm.entries] == [(3, True), (2, False)]
    assert cm.read_pagemap(ci.ImageDir(tmp_path, "x"), 2) is None


def test_bad_images_are_archive_errors(tmp_path: Path) -> None:
    (tmp_path / "pstree.img").write_bytes(b"\x00\x01garbage")
    (tmp_path / "core-1.img").write_bytes(b"")
    d = ci.ImageDir(tmp_path, "broken.tar")
    with pytest.raises(ArchiveError, match=r"checkpoint/pstree.img in broken.tar cannot be decoded"):
        ci.read_processes(d)
    with pytest.raises(ArchiveError, match="core-1.img"):
        d.load("core-1.img")
    with pytest.raises(ArchiveError, match="is missing"):
        d.load("inventory.img")
    assert d.load("inventory.img", required=False) is None
    assert ci.read_inventory(d) is None
    (tmp_path / "stats-dump").write_bytes(b"\x40\x59\x10\x55\x06")
    with pytest.raises(ArchiveError, match="stats-dump in src"):
        ci.read_dump_stats(tmp_path / "stats-dump", "src")


def test_truncated_pages_file(dump: tuple[str, Path], tmp_path: Path) -> None:
    _, dest = dump
    src = images(dest)
    pagemap = cm.read_pagemap(src, 1)
    assert pagemap is not None
    for name in ("pagemap-1.img", cm.pages_file(pagemap)):
        data = (src.path / name).read_bytes()
        (tmp_path / name).write_bytes(data if name.startswith("pagemap") else data[:100])
    with pytest.raises(ArchiveError, match="is truncated"), cm.PageReader(ci.ImageDir(tmp_path, "t"), pagemap):
        pass
