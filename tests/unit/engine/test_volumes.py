"""Volumes without a container: -v/--tmpfs parsing, OCI mounts, the volume store, tar streams."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from amber.config import Layout
from amber.engine import mount_specs
from amber.engine.mount_specs import BindMount, TmpfsMount, VolumeMount, parse, parse_tmpfs, parse_volume
from amber.engine.volumes import VolumeService, archive_member
from amber.errors import ArchiveError, ConflictError, NotFoundError, UsageError


@pytest.fixture
def vols(tmp_path: Path) -> VolumeService:
    return VolumeService(Layout(tmp_path / "root", tmp_path / "run"))


# ------------------------------------------------------------------ specs
def test_volume_specs() -> None:
    assert parse_volume("data:/var/lib/data") == VolumeMount("data", "/var/lib/data")
    assert parse_volume("data:/d/:ro") == VolumeMount("data", "/d", True)
    assert parse_volume("/srv/www:/www:rw") == BindMount(Path("/srv/www"), "/www", False)
    assert parse_volume("./rel:/x:ro") == BindMount(Path(os.path.abspath("rel")), "/x", True)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("data", "expected SOURCE:DEST"),
        (":/x", "expected SOURCE:DEST"),
        ("data:/x:ro:z", "expected SOURCE:DEST"),
        ("data:x", "is not absolute"),
        ("data:/a/../b", "contains '..'"),
        ("data:/x:z", "unsupported option(s) 'z'"),
        ("data:/x:ro,rw", "unsupported option(s)"),
        ("da ta:/x", "neither a volume name nor an absolute path"),
    ],
)
def test_volume_spec_errors(text: str, says: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_volume(text)
    assert says in err.value.message and repr(text) in err.value.message and err.value.hint


def test_tmpfs_specs() -> None:
    assert parse_tmpfs("/tmp") == TmpfsMount("/tmp", ("rw", "noexec", "nosuid", "nodev"))
    t = parse_tmpfs("/run:exec,size=64m,mode=1777,size=32m")
    assert t.options == ("rw", "nosuid", "nodev", "exec", "mode=1777", "size=32m")
    assert parse_tmpfs("/ro:ro").options == ("noexec", "nosuid", "nodev", "ro")
    with pytest.raises(UsageError, match="unsupported option 'bogus=1'"):
        parse_tmpfs("/tmp:bogus=1")
    with pytest.raises(UsageError, match="is not absolute"):
        parse_tmpfs("tmp")
    with pytest.raises(UsageError, match="two mounts at /x"):
        parse(["a:/x"], ["/x"])


def test_oci_mounts(vols: VolumeService, tmp_path: Path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    specs = parse(["data:/data", f"{host}:/h:ro"], ["/tmp:size=1m"])
    assert mount_specs.volume_names(specs) == ["data"]
    mounts = mount_specs.oci_mounts(specs, vols)
    assert vols.exists("data")  # made on first use, as podman does
    assert mounts == [
        {
            "destination": "/data",
            "type": "bind",
            "source": vols.get("data").mountpoint,
            "options": ["rbind", "rprivate", "nosuid", "nodev", "rw"],
        },
        {"destination": "/h", "type": "bind", "source": str(host), "options": ["rbind", "rprivate", "ro"]},
        {
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["rw", "noexec", "nosuid", "nodev", "size=1m"],
        },
    ]
    with pytest.raises(NotFoundError, match=f"bind mount source {tmp_path / 'nope'} does not exist"):
        mount_specs.oci_mounts(parse([f"{tmp_path / 'nope'}:/n"]), vols)


# ------------------------------------------------------------------ the store
def test_create_list_use_remove(vols: VolumeService) -> None:
    v = vols.create("db")
    assert Path(v.mountpoint).is_dir() and v.mountpoint.endswith("/volumes/db/_data")
    assert vols.create("db", exist_ok=True) == v
    with pytest.raises(ConflictError, match="volume db already exists"):
        vols.create("db")
    vols.create("cache")
    assert [x.name for x in vols.list()] == ["cache", "db"]
    vols.use("db", "c1")
    vols.use("db", "c2")
    assert vols.get("db").inspect()["UsedBy"] == ["c1", "c2"]
    with pytest.raises(ConflictError, match="volume db is in use by container"):
        vols.remove("db")
    vols.release("db", "c1")
    vols.remove("db", is_live=lambda cid: cid != "c2")  # c2 is gone
    assert not vols.exists("db") and not Path(v.mountpoint).exists()
    with pytest.raises(NotFoundError, match="no such volume: db"):
        vols.remove("db")
    with pytest.raises(UsageError, match="invalid name"):
        vols.create("../x")


def test_export_import_round_trip(vols: VolumeService) -> None:
    data = Path(vols.create("src").mountpoint)
    os.chmod(data, 0o700)
    (data / "sub").mkdir()
    (data / "sub" / "file").write_bytes(b"payload\n")
    (data / "link").symlink_to("sub/file")
    os.link(data / "sub" / "file", data / "hard")
    out = io.BytesIO()
    vols.export("src", out)
    names = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
    assert names == [".", "hard", "link", "sub", "sub/file"]  # tarfile drops the "/" of "./"
    assert archive_member("src") == "volumes/src.tar"
    out.seek(0)
    back = vols.import_("copy", out, archive_name="volumes/copy.tar")
    got = Path(back.mountpoint)
    assert (got / "sub" / "file").read_bytes() == b"payload\n"
    assert os.readlink(got / "link") == "sub/file"
    assert os.stat(got / "hard").st_ino == os.stat(got / "sub" / "file").st_ino
    assert os.stat(got).st_mode & 0o7777 == 0o700
    with pytest.raises(ConflictError, match="volume copy already exists"):
        vols.import_("copy", io.BytesIO(out.getvalue()), archive_name="x.tar")


def _tar(*members: tuple[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    return buf


@pytest.mark.root  # extracts with the archive's owners (chown)
def test_import_without_a_root_entry(vols: VolumeService) -> None:
    v = vols.import_("plain", _tar(("a/b.txt", b"x")), archive_name="plain.tar")
    assert (Path(v.mountpoint) / "a" / "b.txt").read_bytes() == b"x"


@pytest.mark.parametrize("stream", [_tar(("../escape", b"x")), io.BytesIO(b"not a tar at all" * 64)])
def test_hostile_import_leaves_nothing(vols: VolumeService, stream: io.BytesIO) -> None:
    with pytest.raises(ArchiveError):
        vols.import_("bad", stream, archive_name="volumes/bad.tar")
    assert not vols.exists("bad")
    assert list(Path(vols.layout.root / "volumes").iterdir()) == []


def test_mounts_record_their_container(vols: VolumeService) -> None:
    mount_specs.oci_mounts(parse(["logs:/logs"]), vols, container_id="c1")
    assert vols.get("logs").users == ("c1",)
    with pytest.raises(ConflictError):
        vols.remove("logs")
    vols.release("logs", "c1")
    vols.remove("logs")
    assert vols.release("logs", "c1") is None  # gone already: nothing to do
