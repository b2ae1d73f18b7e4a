"""Spec generation and rewriting, k8s-file log parsing, settings precedence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from amber.config import Settings
from amber.engine import spec as specs
from amber.engine.logs import parse_lines
from amber.errors import UsageError


def test_generated_spec_is_podman_readable() -> None:
    spec = specs.generate(
        cid="a" * 64,
        hostname="h",
        rootfs=Path("/r"),
        args=["sh"],
        env=["A=1"],
        cwd="/",
        netns=Path("/run/x"),
        cgroups_path="/amber/x",
    )
    assert spec["annotations"]["io.container.manager"] == "libpod"
    assert {"type": "network", "path": "/run/x"} in spec["linux"]["namespaces"]
    assert spec["root"]["path"] == "/r"
    assert specs.AUTOREMOVE_ANNOTATION not in spec["annotations"]


def test_rm_is_podmans_autoremove_annotation() -> None:
    """--rm is in the spec as podman records it, so a restore from the archive keeps it."""
    spec = specs.generate(
        cid="a" * 64, hostname="h", rootfs=Path("/r"), args=["sh"], env=[], cwd="/", netns=Path("/n"),
        cgroups_path="/amber/x", auto_remove=True,
    )  # fmt: skip
    assert spec["annotations"]["io.podman.annotations.autoremove"] == "TRUE"


def test_merge_env_user_wins_and_path_present() -> None:
    env = specs.merge_env(["A=1", "B=2"], ["B=3"])
    assert env[0].startswith("PATH=") and "A=1" in env and "B=3" in env and "B=2" not in env


def test_rewrite_for_restore_rebinds_engine_files(tmp_path: Path) -> None:
    old: dict[str, Any] = {
        "root": {"path": "/var/lib/containers/storage/overlay/x/merged"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/etc/hosts",
                "type": "bind",
                "source": "/run/containers/storage/x/userdata/hosts",
                "options": ["bind"],
            },
            {
                "destination": "/dev/shm",
                "type": "bind",
                "source": "/var/lib/containers/storage/x/userdata/shm",
                "options": ["bind"],
            },
        ],
        "linux": {
            "namespaces": [{"type": "network", "path": "/run/netns/old"}, {"type": "pid"}],
            "cgroupsPath": "machine.slice:libpod:x",
        },
        "hooks": {"prestart": []},
    }
    new = specs.rewrite_for_restore(
        old, rootfs=tmp_path / "m", netns=tmp_path / "ns", cgroups_path="/amber/y", bundle=tmp_path, cid="b" * 64
    )
    assert new["root"]["path"] == str(tmp_path / "m")
    assert new["linux"]["cgroupsPath"] == "/machine.slice/amber-" + "b" * 64  # same parent, new leaf
    assert {"type": "network", "path": str(tmp_path / "ns")} in new["linux"]["namespaces"]
    assert "hooks" not in new
    by_dest = {m["destination"]: m for m in new["mounts"]}
    assert [m["destination"] for m in new["mounts"]] == ["/proc", "/etc/hosts", "/dev/shm"]
    assert Path(by_dest["/etc/hosts"]["source"]).is_file()
    assert Path(by_dest["/dev/shm"]["source"]).is_dir()
    assert old["linux"]["cgroupsPath"] == "machine.slice:libpod:x"  # the input is not changed


def test_log_partial_lines_joined() -> None:
    lines = [
        "2026-01-01T00:00:00.1+00:00 stdout P hel\n",
        "2026-01-01T00:00:00.2+00:00 stderr F oops\n",
        "2026-01-01T00:00:00.3+00:00 stdout F lo\n",
        "garbage\n",
    ]
    got = [(x.stream, x.text) for x in parse_lines(iter(lines))]
    assert got == [("stderr", "oops"), ("stdout", "hello")]


def test_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "amber.toml"
    conf.write_text('[engine]\nruntime = "runc"\nroot = "/from/file"\n')
    monkeypatch.setenv("AMBER_RUNROOT", "/from/env")
    monkeypatch.delenv("AMBER_ROOT", raising=False)
    s = Settings.load(config_file=str(conf))
    assert (s.default_runtime, s.root, s.runroot) == ("runc", Path("/from/file"), Path("/from/env"))
    assert Settings.load(root="/cli", config_file=str(conf)).root == Path("/cli")


def test_bad_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "amber.toml"
    conf.write_text("[engine\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        Settings.load(config_file=str(conf))


def test_restore_cgroups_path_keeps_parent() -> None:
    assert specs.restore_cgroups_path("/libpod_parent/libpod-x", "y", "/d") == "/libpod_parent/amber-y"
    assert specs.restore_cgroups_path("/amber/amber-x", "y", "/d") == "/amber/amber-y"
    assert specs.restore_cgroups_path("", "y", "/d") == "/d"


def test_bind_sources_are_distinct_per_destination(tmp_path: Path) -> None:
    dests = ["/etc/hosts", "/etc_hosts", "/a/b", "/a_b", "/a%2Fb", "/", "/root", "/..", "/.", "/" + "x/" * 200]
    spec = {"mounts": [{"destination": d, "type": "bind", "source": "/host", "options": ["rbind"]} for d in dests]}
    new = specs.rewrite_for_restore(
        spec, rootfs=tmp_path / "rootfs", netns=tmp_path / "ns", cgroups_path="", bundle=tmp_path / "b", cid="c" * 64
    )
    sources = [Path(m["source"]) for m in new["mounts"]]
    assert len(set(sources)) == len(dests)
    files = tmp_path / "b" / "restore-mounts"
    assert all(s.parent == files and s.exists() for s in sources)  # never outside, never a shared one
    assert (files / specs.bind_source_name("/etc/hosts")).read_text().startswith("127.0.0.1")
