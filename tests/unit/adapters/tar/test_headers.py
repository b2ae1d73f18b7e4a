"""Hostile headers: every reader refuses them at once, naming the member, as an ArchiveError."""

from __future__ import annotations

import gzip
import io
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import zstandard

from amber.adapters import checkpoint_archive as ca
from amber.adapters import image_sources, layers
from amber.adapters.tar.headers import header_problem, members, open_tar
from amber.errors import ArchiveError
from tests.unit.adapters.tar.helpers import END, HOSTILE_HEADERS, extract_names, pax_member

HEAD = pax_member("config.dump", b"{}") + pax_member("spec.dump", b"{}")


def _refused(call: Callable[[], object], where: str) -> ArchiveError:
    started = time.monotonic()
    with pytest.raises(ArchiveError) as info:
        call()
    assert time.monotonic() - started < 5, f"{where} took too long"
    assert "'x'" in info.value.message or "PaxHeader" in info.value.message, info.value.message
    assert info.value.hint
    return info.value


@pytest.mark.parametrize("case", sorted(HOSTILE_HEADERS))
def test_engine_refuses_at_once(case: str, tmp_path: Path) -> None:
    data = HOSTILE_HEADERS[case] + END
    err = _refused(lambda: extract_names(io.BytesIO(data), tmp_path / "d", archive_name="h.tar"), case)
    assert "h.tar" in err.message
    seekable = tmp_path / "h.tar"
    seekable.write_bytes(data)
    with seekable.open("rb") as f:
        _refused(lambda: list(members(open_tar(f, "h.tar", stream=False), "h.tar")), case)


@pytest.mark.root  # extracts with the archive's owners (chown)
@pytest.mark.parametrize("comp", ["none", "zstd", "gzip"])
@pytest.mark.parametrize("case", sorted(HOSTILE_HEADERS))
def test_checkpoint_readers_refuse(case: str, comp: str, tmp_path: Path) -> None:
    data = HEAD + HOSTILE_HEADERS[case] + END
    first = HOSTILE_HEADERS[case] + HEAD + END
    path, path_first = tmp_path / "a.tar", tmp_path / "b.tar"
    packers: dict[str, Callable[[bytes], bytes]] = {
        "none": bytes,
        "zstd": zstandard.ZstdCompressor().compress,
        "gzip": gzip.compress,
    }
    pack = packers[comp]
    path.write_bytes(pack(data))
    path_first.write_bytes(pack(first))
    _refused(lambda: ca.list_members(path), f"list_members {case}")
    _refused(lambda: ca.extract_archive(path, tmp_path / "out"), f"extract_archive {case}")
    _refused(lambda: ca.extract_members(path, tmp_path / "out2", lambda n: True), f"extract_members {case}")
    _refused(lambda: ca.read_head(path_first), f"read_head {case}")


@pytest.mark.parametrize("comp", ["none", "gzip"])
@pytest.mark.parametrize("case", sorted(HOSTILE_HEADERS))
def test_image_readers_refuse(case: str, comp: str, tmp_path: Path) -> None:
    data = pax_member("etc/hostname", b"h\n") + HOSTILE_HEADERS[case] + END
    blob = gzip.compress(data) if comp == "gzip" else data
    _refused(lambda: layers.extract_layer(io.BytesIO(blob), tmp_path / "layers", label="layer.tar"), case)
    assert not any((tmp_path / "layers").iterdir())
    path = tmp_path / "rootfs.tar"
    path.write_bytes(blob)

    def open_image() -> None:
        with image_sources.open_source(path, tmp_path / "tmp"):
            pass

    _refused(open_image, case)
    oci = pax_member("oci-layout", b"{}") + pax_member("index.json", b"{}") + HOSTILE_HEADERS[case] + END
    path.write_bytes(gzip.compress(oci) if comp == "gzip" else oci)
    _refused(open_image, f"oci-archive {case}")


def test_sane_headers_pass() -> None:
    ti = tarfile.TarInfo("ok")
    ti.size, ti.mtime, ti.uid = 10, 1_700_000_000, 1000
    ti.pax_headers = {"mtime": "1700000000.5", "atime": "-12.25", "size": "10"}
    assert header_problem(ti) is None
    ti.mode = 0o100644  # Go writes the file-type bits too
    assert header_problem(ti) is None


def test_a_bad_checksum_is_still_garbage(tmp_path: Path) -> None:
    """A block whose checksum is wrong is not a header: `not a tar archive`, as before."""
    with pytest.raises(ArchiveError, match="not a tar archive"):
        extract_names(io.BytesIO(b"garbage" * 200), tmp_path, archive_name="g.tar")
