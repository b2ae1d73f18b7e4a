"""The streaming reader: an archive read once from a pipe-like reader, head first, then the rest."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from amber.adapters import checkpoint_archive as ca
from amber.adapters import checkpoint_stream as cs
from amber.errors import ArchiveError
from tests.unit.adapters.tar.helpers import plain_tar
from tests.unit.adapters.test_checkpoint_archive import CONFIG, FIXTURES, MEMBERS, PODMAN, SPEC, bundle, head

__all__ = ["bundle"]  # the fixture, used by name


class Pipe(io.RawIOBase):
    """A reader that cannot seek nor tell its size, as stdin from a pipe."""

    def __init__(self, data: bytes, chunk: int = 65536) -> None:
        super().__init__()
        self.data = memoryview(data)
        self.pos = 0
        self.chunk = chunk

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any, /) -> int:
        n = min(len(b), self.chunk, len(self.data) - self.pos)
        b[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


def _files(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in files:
            p = Path(dirpath, f)
            out[os.path.relpath(p, root)] = None if p.is_symlink() else p.read_bytes()
    return out


def _stream(data: bytes, tmp_path: Path, limit: int = 1 << 30) -> cs.ArchiveStream:
    return cs.ArchiveStream(Pipe(data), Path("<stdin>"), tmp_path / "spool", max_total_size=limit)


@pytest.mark.parametrize("comp", ["none", "zstd", "gzip"])
def test_amber_archive_from_a_pipe(comp: str, bundle: Path, tmp_path: Path) -> None:
    path = tmp_path / "a.tar"
    ca.write_archive(path, bundle, MEMBERS, ca.Compression(comp), head=head({"schema_version": 1}))
    with _stream(path.read_bytes(), tmp_path) as s:
        assert s.head is not None
        assert (s.head.config, s.head.spec, s.head.manifest) == (CONFIG, SPEC, {"schema_version": 1})
        assert s.head.compression is ca.Compression(comp)
        assert not (tmp_path / "spool").exists()  # metadata first: nothing spooled
        written = s.extract_rest(tmp_path / "out")
    expected = tmp_path / "file"
    ca.extract_archive(path, expected, skip=lambda n: n in cs.HEAD)
    assert ca.CONFIG_DUMP not in written and ca.INVENTORY in written
    assert _files(tmp_path / "out") == _files(expected)


@pytest.mark.root  # the archive's owners are kept (chown)
@pytest.mark.parametrize("name", sorted(PODMAN))
def test_podman_fixture_from_a_pipe(name: str, tmp_path: Path) -> None:
    path = FIXTURES / name
    file_head = ca.read_head(path)
    with _stream(path.read_bytes(), tmp_path) as s:
        assert s.head is not None
        assert (s.head.config, s.head.spec, s.head.compression) == (
            file_head.config,
            file_head.spec,
            file_head.compression,
        )
        assert s.head.network_status == file_head.network_status
        assert (tmp_path / "spool" / ca.DEVSHM).is_file()  # podman puts it before config.dump
        written = s.extract_rest(tmp_path / "out")
    expected = tmp_path / "file"
    ca.extract_archive(path, expected, skip=lambda n: n in cs.HEAD)
    assert written[:2] == ["artifacts", ca.DEVSHM] and ca.INVENTORY in written
    assert _files(tmp_path / "out") == _files(expected)
    assert os.listdir(tmp_path / "spool") == []  # moved, not copied


def test_truncated_stream(bundle: Path, tmp_path: Path) -> None:
    path = tmp_path / "a.tar.zst"
    ca.write_archive(path, bundle, MEMBERS, ca.Compression.ZSTD, head=head())
    data = path.read_bytes()
    with _stream(data[: len(data) // 2], tmp_path) as s, pytest.raises(ArchiveError, match="truncated|corrupt"):
        s.extract_rest(tmp_path / "out")


def test_empty_and_not_tar(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="is empty"), _stream(b"", tmp_path):
        pass
    with pytest.raises(ArchiveError, match="not a tar archive"), _stream(b"hello" * 300, tmp_path):
        pass


def test_metadata_twice_is_refused(tmp_path: Path) -> None:
    config = json.dumps(CONFIG).encode()
    spec = json.dumps(SPEC).encode()
    data = plain_tar([(ca.CONFIG_DUMP, config), (ca.SPEC_DUMP, spec), (ca.CONFIG_DUMP, config)])
    with pytest.raises(ArchiveError, match="appears twice"), _stream(data, tmp_path):
        pass
    late = plain_tar(
        [(ca.CONFIG_DUMP, config), (ca.SPEC_DUMP, spec), ("checkpoint/inventory.img", b"i"), (ca.SPEC_DUMP, spec)]
    )
    with _stream(late, tmp_path) as s, pytest.raises(ArchiveError, match="appears twice"):
        s.extract_rest(tmp_path / "out")


def test_no_metadata(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="lacks config.dump"), _stream(plain_tar([("x", b"1")]), tmp_path):
        pass


def test_spool_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Late metadata is waited for by spooling what comes before it, at most SPOOL_LIMIT bytes."""
    monkeypatch.setattr(cs, "SPOOL_LIMIT", 1000)
    data = plain_tar([("artifacts/big", b"x" * 2000), (ca.CONFIG_DUMP, json.dumps(CONFIG).encode())])
    with pytest.raises(ArchiveError, match="more than the 1000 bytes allowed"), _stream(data, tmp_path):
        pass


def test_size_bound_covers_spool_and_rest(tmp_path: Path) -> None:
    data = plain_tar(
        [
            ("artifacts/a", b"x" * 600),
            (ca.CONFIG_DUMP, json.dumps(CONFIG).encode()),
            (ca.SPEC_DUMP, json.dumps(SPEC).encode()),
            ("checkpoint/inventory.img", b"y" * 600),
        ]
    )
    with _stream(data, tmp_path, limit=1000) as s, pytest.raises(ArchiveError, match="1000 bytes allowed"):
        s.extract_rest(tmp_path / "out")


def test_hostile_member_in_spool(tmp_path: Path) -> None:
    data = plain_tar([("../escape", b"x"), (ca.CONFIG_DUMP, json.dumps(CONFIG).encode())])
    with pytest.raises(ArchiveError, match="refusing member"), _stream(data, tmp_path):
        pass
    assert not (tmp_path / "escape").exists()
