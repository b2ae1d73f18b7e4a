"""Property tests (hypothesis, derandomized: the same examples every run) of the tar header checks
and the CRIU image readers: whatever the bytes, only amber's errors escape, and the work is
bounded (every read ends: nothing loops on a hostile number).

Headers: PAX records (sizes, ids, times, GNU sparse numbers) with hostile values, and GNU sparse
members, read through `members()` from a stream and from a seekable file. CRIU images: podman's
own images with bytes flipped, cut or inserted, decoded and checked as restore does.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amber.adapters.criu_images import ImageDir, read_credentials, read_mountpoints, read_processes, read_rlimits
from amber.adapters.criu_memory import read_pagemap
from amber.adapters.tar.headers import members, open_tar
from amber.engine import privilege_checks
from amber.errors import AmberError, ArchiveError

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,  # a fixed seed: CI and developers see the same examples
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
FIXTURE = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "podman-5.4.2" / "counter-runc.tar"
PAX_KEYS = [
    "size",
    "uid",
    "gid",
    "mtime",
    "path",
    "linkpath",
    "GNU.sparse.size",
    "GNU.sparse.realsize",
    "GNU.sparse.offset",
    "GNU.sparse.numbytes",
    "GNU.sparse.numblocks",
    "GNU.sparse.major",
    "GNU.sparse.minor",
    "GNU.sparse.map",
    "GNU.sparse.name",
]
HOSTILE_NUMBERS = ["-4096", "-1", "0", "1", "512", str(10**30), "1e9", "inf", "nan", "0x10", " 5", "", "1,2,3"]


def _pax_archive(records: dict[str, str], data: bytes, sparse_type: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        ti = tarfile.TarInfo("f")
        ti.size = len(data)
        ti.pax_headers = records
        if sparse_type:
            ti.type = tarfile.GNUTYPE_SPARSE
        tar.addfile(ti, io.BytesIO(data))
        ok = tarfile.TarInfo("after")
        tar.addfile(ok, io.BytesIO(b""))
    return buf.getvalue()


def _read_all(data: bytes, stream: bool) -> None:
    tar = open_tar(io.BytesIO(data), "fuzz.tar", stream=stream)
    with tar:
        for ti in members(tar, "fuzz.tar"):
            if ti.isfile() and not stream:
                f = tar.extractfile(ti)
                if f is not None:
                    f.read(1 << 20)  # bounded: a lying size never makes this read more


@SETTINGS
@given(
    records=st.dictionaries(
        st.sampled_from(PAX_KEYS),
        st.one_of(st.sampled_from(HOSTILE_NUMBERS), st.text(max_size=12)),
        max_size=5,
    ),
    data=st.binary(max_size=1500),
    sparse_type=st.booleans(),
    stream=st.booleans(),
)
def test_hostile_pax_records_are_refused_or_read(
    records: dict[str, str], data: bytes, sparse_type: bool, stream: bool
) -> None:
    try:
        archive = _pax_archive(records, data, sparse_type)
    except (ValueError, UnicodeError, tarfile.TarError):
        return  # tarfile would not write it; nothing to read
    try:
        _read_all(archive, stream)
    except AmberError:
        pass


@SETTINGS
@given(
    header=st.binary(min_size=512, max_size=512),
    offset=st.integers(0, 511),
    value=st.binary(min_size=1, max_size=12),
    stream=st.booleans(),
)
def test_corrupted_header_blocks_give_archive_errors(header: bytes, offset: int, value: bytes, stream: bool) -> None:
    """A valid member with part of its header block overwritten (checksum fixed up, so the
    numbers themselves are what the reader meets)."""
    base = bytearray(_pax_archive({}, b"x" * 700, False))
    first = 0 if base[156:157] != b"x" else 1024  # skip the pax block tarfile may write
    block = bytearray(base[first : first + 512])
    block[offset : offset + len(value)] = value[: 512 - offset]
    block[148:156] = b"        "
    block[148:156] = f"{sum(block):06o}\0 ".encode()
    base[first : first + 512] = block
    try:
        _read_all(bytes(base), stream)
    except AmberError:
        pass


# ===================================== CRIU images ===========================================
@pytest.fixture(scope="module")
def dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    top = tmp_path_factory.mktemp("dump")
    with tarfile.open(FIXTURE) as tar:
        for ti in tar:
            if ti.name == "spec.dump" or (ti.name.startswith("checkpoint/") and ti.name.endswith(".img")):
                f = tar.extractfile(ti)
                if f is not None:
                    (top / Path(ti.name).name).write_bytes(f.read())
    return top, json.loads((top / "spec.dump").read_text())


IMAGES = ["pstree.img", "core-1.img", "core-18.img", "mountpoints-13.img", "pagemap-1.img"]


def test_podman_s_images_decode_and_pass(dump: tuple[Path, dict[str, Any]]) -> None:
    top, spec = dump
    assert privilege_checks.image_violations(ImageDir(top, "counter-runc.tar"), spec) == []


@SETTINGS
@given(
    name=st.sampled_from(IMAGES),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["flip", "cut", "insert"]), st.integers(0, 1 << 16), st.binary(min_size=1, max_size=8)
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_mutated_criu_images_give_archive_errors(
    dump: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory, name: str, edits: list[Any]
) -> None:
    top, spec = dump
    work = tmp_path_factory.mktemp("img")
    for image in top.glob("*.img"):
        shutil.copy(image, work / image.name)
    data = bytearray((top / name).read_bytes())
    for op, at, value in edits:
        at %= len(data) + 1
        if op == "flip":
            data[at : at + len(value)] = bytes(b ^ v for b, v in zip(data[at : at + len(value)], value, strict=False))
        elif op == "cut":
            del data[at : at + value[0]]
        else:
            data[at:at] = value
    (work / name).write_bytes(bytes(data))
    images = ImageDir(work, "fuzz.tar")
    try:
        processes = read_processes(images)
        read_credentials(images, processes)
        read_rlimits(images, processes)
        read_mountpoints(images)
        for p in processes:
            read_pagemap(images, p.pid)
        privilege_checks.image_violations(images, spec)
    except ArchiveError:
        pass
