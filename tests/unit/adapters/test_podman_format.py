"""podman_format's typed records: podman's real config.dump, amber.manifest's schema check,
pending markers, runtime state; and the one Layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amber.adapters import checkpoint_archive as ca
from amber.adapters import podman_format as fmt
from amber.config import Layout
from amber.errors import ArchiveError, PreconditionError
from tests.conftest import FIXTURES

PODMAN = {"counter-crun.tar.zst": "crun", "counter-runc.tar": "runc"}


def raw_member(path: Path, member: str, tmp: Path) -> Any:
    ca.extract_members(path, tmp, lambda n: n == member)
    return json.loads((tmp / member).read_text())


# ===================================== config.dump ============================================
@pytest.mark.parametrize("name", sorted(PODMAN))
def test_config_dump_of_podman_archives(name: str, tmp_path: Path) -> None:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    raw = raw_member(path, fmt.CONFIG_DUMP, tmp_path)
    config = fmt.ConfigDump.from_dict(raw, path)
    assert config.runtime == PODMAN[name] and config.name == name.split(".")[0]
    assert config.rootfs_image_name == "localhost/busybox:fixture" and config.id and len(config.id) == 64
    assert config.rootfs_image_id and config.created_time and config.created_time.startswith("2026-")
    assert config.command and config.command[0] == "sh"
    assert config.checkpointed_time is None and config.amber is None  # podman records neither
    assert "spec" in config.extra and "newNetworks" in config.extra  # podman's own keys are kept
    assert config.to_dict() == raw  # round trip: podman's archive passes through intact
    head = ca.read_head(path)
    assert head.config_dump == config and head.config == raw and head.amber_manifest is None


def test_config_dump_keeps_nulls_and_unknown_keys() -> None:
    raw = {"id": "x", "command": None, "Dependencies": None, "future": {"a": [1]}, "restored": True}
    config = fmt.ConfigDump.from_dict(raw, "a.tar")
    assert config.command is None and config.restored is True
    assert config.to_dict() == raw


@pytest.mark.parametrize(
    ("key", "value"),
    [("runtime", 5), ("name", ["x"]), ("rootfsImageName", {"a": 1}), ("command", "sh"), ("restored", "yes")],
)
def test_config_dump_bad_shapes_name_archive_and_field(key: str, value: object) -> None:
    with pytest.raises(ArchiveError) as err:
        fmt.ConfigDump.from_dict({"id": "x", key: value}, "/tmp/a.tar")
    assert "/tmp/a.tar" in err.value.message and f"'{key}'" in err.value.message and err.value.hint


def test_config_dump_amber_object() -> None:
    raw = {"amber": {"version": "1", "criuVersion": "4.2", "runtimePath": "/usr/bin/crun", "new": 1}}
    config = fmt.ConfigDump.from_dict(raw, "a.tar")
    assert config.criu_version == "4.2" and config.amber is not None and config.amber.runtime_path == "/usr/bin/crun"
    assert config.to_dict() == raw
    with pytest.raises(ArchiveError, match="criuVersion"):
        fmt.ConfigDump.from_dict({"amber": {"criuVersion": 4}}, "a.tar")
    with pytest.raises(ArchiveError, match="'amber'"):
        fmt.ConfigDump.from_dict({"amber": [1]}, "a.tar")


def test_config_dump_not_an_object() -> None:
    with pytest.raises(ArchiveError, match="a.tar"):
        fmt.ConfigDump.from_dict(["name"], "a.tar")


# ===================================== amber.manifest =========================================
def test_manifest_round_trip_and_sizes() -> None:
    raw = {"schema_version": 1, "criu_version": "4.2.1", "sizes": {"checkpoint": 10, "memory_pages": 4}, "x": 1}
    manifest = fmt.AmberManifest.from_dict(raw, "a.tar")
    assert manifest.images_size == 10 and manifest.sizes is not None and manifest.sizes.rootfs_diff is None
    assert manifest.to_dict() == raw
    assert fmt.AmberManifest.from_dict({"schema_version": 1}, "a.tar").images_size == 0


def test_manifest_says_whether_deleted_files_come_first() -> None:
    """An addition within schema 1: older ambers keep it as an unknown key, newer ones read it."""
    raw = {"schema_version": 1, "deleted_files_first": True}
    manifest = fmt.AmberManifest.from_dict(raw, "a.tar")
    assert manifest.deleted_files_first is True and manifest.to_dict() == raw
    assert fmt.AmberManifest.from_dict({"schema_version": 1}, "a.tar").deleted_files_first is None
    with pytest.raises(ArchiveError, match="deleted_files_first"):
        fmt.AmberManifest.from_dict({"schema_version": 1, "deleted_files_first": "yes"}, "a.tar")


def test_manifest_newer_schema_is_refused() -> None:
    with pytest.raises(PreconditionError) as err:
        fmt.AmberManifest.from_dict({"schema_version": 2}, "/x/a.tar")
    assert "/x/a.tar" in err.value.message and "schema version 2" in err.value.message and err.value.hint


@pytest.mark.parametrize("raw", [{}, {"schema_version": "1"}, {"schema_version": 0}, {"schema_version": True}])
def test_manifest_without_a_version_is_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ArchiveError, match="schema_version"):
        fmt.AmberManifest.from_dict(raw, "a.tar")


def test_manifest_bad_sizes_are_refused() -> None:
    with pytest.raises(ArchiveError, match="'checkpoint'"):
        fmt.AmberManifest.from_dict({"schema_version": 1, "sizes": {"checkpoint": "lots"}}, "a.tar")
    with pytest.raises(ArchiveError, match="'memory_pages'"):
        fmt.AmberManifest.from_dict({"schema_version": 1, "sizes": {"memory_pages": -1}}, "a.tar")


def test_read_head_checks_the_manifest(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    (bundle / "checkpoint").mkdir(parents=True)
    head = {
        ca.AMBER_MANIFEST: json.dumps({"schema_version": 7}).encode(),
        ca.CONFIG_DUMP: json.dumps({"name": "c"}).encode(),
        ca.SPEC_DUMP: b"{}",
    }
    ca.write_archive(tmp_path / "a.tar", bundle, ["checkpoint"], ca.Compression.NONE, head=head)
    with pytest.raises(PreconditionError, match="newer amber"):
        ca.read_head(tmp_path / "a.tar")


# ===================================== markers, runtime state ================================
def test_pending_markers_round_trip() -> None:
    marker = fmt.PendingCheckpoint(Path("/w"), Path("/x/a.tar"), stops=True)
    assert fmt.PendingCheckpoint.from_dict(marker.to_dict(), "m") == marker
    assert fmt.PendingCheckpoint.from_dict({"work": "/w", "export": "", "stops": False}, "m").export is None
    restore = fmt.PendingRestore(Path("/a.tar"), Path("/w"))
    assert fmt.PendingRestore.from_dict(restore.to_dict(), "m") == restore
    with pytest.raises(ArchiveError, match="'work'"):
        fmt.PendingCheckpoint.from_dict({"export": ""}, "/c/checkpoint.pending")
    with pytest.raises(ArchiveError, match="/c/restore.pending"):
        fmt.PendingRestore.from_dict({"work": 5}, "/c/restore.pending")


def test_runtime_state() -> None:
    st = fmt.RuntimeState.from_dict({"ociVersion": "1.0", "id": "x", "pid": 5, "status": "running"}, "crun")
    assert st.running and st.alive and st.to_dict()["ociVersion"] == "1.0"
    assert not fmt.RuntimeState.from_dict({"status": "stopped"}, "crun").alive
    with pytest.raises(ArchiveError, match="'pid'"):
        fmt.RuntimeState.from_dict({"pid": "5"}, "crun")


def test_spec_shape() -> None:
    fmt.check_spec_shape({"mounts": [{"destination": "/proc", "type": "proc"}], "process": {"args": []}}, "a")
    with pytest.raises(ArchiveError, match="malformed spec.dump: 'mounts'"):
        fmt.check_spec_shape({"mounts": 5}, "a")
    assert fmt.spec_command({"process": {"args": ["sh", 1]}}) == ["sh", "1"] and fmt.spec_command({}) == []


# ===================================== Layout =================================================
def test_layout_owns_every_container_path(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "root", tmp_path / "run")
    p = layout.container("c1")
    assert p.dir == layout.containers / "c1" == layout.container_dir("c1")
    assert p.bundle == p.dir / "userdata" == layout.bundle("c1")
    assert p.config_json == p.bundle / "config.json" and p.log == p.bundle / "ctr.log"
    assert (p.upper, p.work, p.merged) == (p.dir / "diff", p.dir / "work", p.dir / "merged")
    assert p.netns == layout.netns / "c1" and p.exit_file == layout.exits / "c1"
    assert p.checkpoint == p.bundle / "checkpoint" and p.restore_mounts == p.bundle / "restore-mounts"
    assert p.dump_log == p.dir / "dump.log" and p.restore_log == p.bundle / "restore.log"
    assert p.pending_markers == (p.dir / "checkpoint.pending", p.dir / "restore.pending")
    assert layout.runtime_state("crun") == tmp_path / "run" / "runtime" / "crun"
    assert layout.shm.parent == Path("/dev/shm") and layout.shm != Layout(tmp_path, tmp_path).shm


# ===================================== any JSON: a record that round-trips, or ArchiveError ====
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
_KEYS = ["id", "name", "runtime", "command", "restored", "amber", "createdTime", "schema_version", "sizes", "x"]
_SIZES = st.dictionaries(st.sampled_from(["checkpoint", "memory_pages", "rootfs_diff", "y"]), _JSON, max_size=3)
_OBJECTS = st.dictionaries(st.sampled_from(_KEYS), _JSON | _SIZES, max_size=6)


@settings(max_examples=150, deadline=None, database=None)
@given(data=_OBJECTS | _JSON)
def test_any_json_round_trips_or_is_refused(data: Any) -> None:
    records: list[Any] = [fmt.ConfigDump, fmt.AmberManifest, fmt.RuntimeState, fmt.PendingRestore]
    for record in records:
        try:
            parsed = record.from_dict(data, "a.tar")
        except ArchiveError as exc:
            assert "a.tar" in exc.message and exc.hint
            continue
        except PreconditionError:
            assert record is fmt.AmberManifest
            continue
        again = record.from_dict(parsed.to_dict(), "a.tar")
        assert again == parsed
        if record is not fmt.PendingRestore:  # a marker's paths are normalised
            assert parsed.to_dict() == data
