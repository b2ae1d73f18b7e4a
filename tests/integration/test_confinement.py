"""A restored container's power is amber's, never the archive's: the real stack, both runtimes.

Hostile archives are built from podman's fixtures and from an amber archive: forged credentials
in core-*.img, a privileged spec.dump, an overlay of host directories, a missing pid namespace.
Each is refused with exit 6 before any work, leaving nothing behind; --trust-archive obeys it.
One archive restored into two amber roots gets two cgroups: rm -f in one leaves the other.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from amber.models import Status
from tests import hostile_corpus as hc
from tests.conftest import FIXTURES, Amber, mounts_under
from tests.integration.test_checkpoint import start_counter

pytestmark = pytest.mark.root

PODMAN = Path(os.environ.get("AMBER_TEST_FIXTURES", str(FIXTURES)))
BUSYBOX = "localhost/busybox:fixture"
PODMAN_ARCHIVE = {"runc": "counter-runc.tar", "crun": "counter-crun.tar.zst"}


def _cgroups_of(cid: str) -> list[Path]:
    return [d for d in Path("/sys/fs/cgroup").glob("**/amber-*") if d.name.endswith(cid)]


def _assert_nothing_left(amber: Amber, cid: str, shadow: os.stat_result) -> None:
    engine = amber.fresh_engine()
    assert engine.containers.list(all_containers=True) == []
    assert mounts_under(amber.root) == [] and mounts_under(amber.runroot) == []
    assert _cgroups_of(cid) == []
    st = os.stat("/etc/shadow")
    assert (st.st_ino, st.st_mode, st.st_mtime_ns) == (shadow.st_ino, shadow.st_mode, shadow.st_mtime_ns)


def _restore(amber: Amber, path: Path, capfd: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    capfd.readouterr()
    rc = amber("restore", "--import", str(path), *extra)
    return rc, capfd.readouterr().err


def _amber_archive(amber: Amber, demo_image: str, runtime: str, tmp_path: Path) -> Path:
    start_counter(amber, demo_image, runtime)
    base = tmp_path / "base.tar"
    assert amber("checkpoint", "-e", str(base), "--compress", "none", "cnt") == 0
    assert amber("rm", "cnt") == 0
    return base


def _podman_archive(amber: Amber, runtime: str, tmp_path: Path) -> Path:
    if not PODMAN.is_dir():
        pytest.skip("podman fixtures not present (AMBER_TEST_FIXTURES)")
    assert amber("image", "import", str(PODMAN / "busybox-rootfs.tar"), BUSYBOX) == 0
    src = PODMAN / PODMAN_ARCHIVE[runtime]
    if src.name.endswith(".zst"):
        import zstandard

        plain = tmp_path / "podman.tar"
        with src.open("rb") as f, plain.open("wb") as out:
            zstandard.ZstdDecompressor().copy_stream(f, out)
        return plain
    return src


def _container_id(path: Path) -> str:
    from amber.adapters.checkpoint_archive import read_head

    return str(read_head(path).config["id"])


def _hostile(base: Path, out: Path, build: Callable[[hc.Ctx], list[hc.Entry]]) -> Path:
    out.write_bytes(hc.tar_bytes(build(hc.Ctx(hc.read_entries(base), out.parent))))
    return out


HOSTILE: dict[str, Callable[[hc.Ctx], list[hc.Entry]]] = {
    "forged-creds": hc.forged_credentials,
    "privileged-spec": hc.privileged_spec,
    "overlay-host-dirs": hc.overlay_host_dirs,
    "no-pid-namespace": hc.no_pid_namespace,
}


@pytest.mark.parametrize("source", ["amber", "podman"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archive_is_refused_before_any_work(
    amber: Amber,
    demo_image: str,
    runtime: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    case: str,
    source: str,
    podman_network: str,
) -> None:
    base = _amber_archive(amber, demo_image, runtime, tmp_path) if source == "amber" else None
    base = base or _podman_archive(amber, runtime, tmp_path)
    evil = _hostile(base, tmp_path / f"{case}.tar", HOSTILE[case])
    cid = _container_id(base)
    shadow = os.stat("/etc/shadow")
    rc, err = _restore(amber, evil, capfd)
    assert rc == 6, err
    assert "error:" in err and "hint:" in err and "--trust-archive" in err, err
    assert "asks for more than amber allows" in err, err
    _assert_nothing_left(amber, cid, shadow)
    capfd.readouterr()
    assert amber("archive", "check", str(evil)) == 1
    assert "asks for more than amber allows" in capfd.readouterr().out


@pytest.mark.parametrize("source", ["amber", "podman"])
def test_ordinary_archives_restore_without_the_flag(
    amber: Amber,
    demo_image: str,
    runtime: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    source: str,
    podman_network: str,
) -> None:
    base = _amber_archive(amber, demo_image, runtime, tmp_path) if source == "amber" else None
    base = base or _podman_archive(amber, runtime, tmp_path)
    capfd.readouterr()
    assert amber("archive", "check", str(base)) in (0, 1)
    assert "privileges" in capfd.readouterr().out
    rc, err = _restore(amber, base, capfd, "--name", "ok")
    assert rc == 0, err
    config = (amber.root / "containers").glob("*/userdata/config.json")
    spec: dict[str, Any] = json.loads(next(iter(config)).read_text())
    assert {ns["type"] for ns in spec["linux"]["namespaces"]} >= {"pid", "mount", "ipc", "uts", "network"}
    assert "CAP_SYS_ADMIN" not in spec["process"]["capabilities"]["bounding"]
    assert spec["process"]["noNewPrivileges"] is True
    # stop + start runs the confined config.json, not the archive's spec
    assert amber("stop", "-t", "1", "ok") == 0
    assert amber("start", "ok") == 0
    started = amber.fresh_engine().containers.store.get("ok")
    assert started.status == Status.RUNNING
    assert os.readlink(f"/proc/{started.pid}/ns/pid") != os.readlink("/proc/self/ns/pid")  # its own pid namespace
    assert os.readlink(f"/proc/{started.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert amber("rm", "-f", "ok") == 0


def test_privileged_spec_restores_with_trust_archive(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Every capability, no_new_privs off, all devices: refused, then obeyed with the opt-in.
    (The masked paths stay: they are mount points CRIU must find again.)"""
    base = _amber_archive(amber, demo_image, runtime, tmp_path)

    def change(spec: dict[str, Any]) -> None:
        masked, readonly = spec["linux"]["maskedPaths"], spec["linux"]["readonlyPaths"]
        hc._privileged(spec)
        spec["linux"]["maskedPaths"], spec["linux"]["readonlyPaths"] = masked, readonly

    evil = _hostile(base, tmp_path / "privileged.tar", lambda ctx: ctx.with_json("spec.dump", change))
    rc, err = _restore(amber, evil, capfd)
    assert rc == 6 and "process.capabilities.bounding" in err and "linux.resources.devices" in err, err
    rc, err = _restore(amber, evil, capfd, "--trust-archive")
    assert rc == 0, err
    c = amber.fresh_engine().containers.store.get("cnt")
    spec = json.loads((amber.root / "containers" / c.id / "userdata" / "config.json").read_text())
    assert "CAP_SYS_ADMIN" in spec["process"]["capabilities"]["bounding"]
    assert amber("rm", "-f", "cnt") == 0


def test_one_archive_in_two_roots_gets_two_cgroups(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    base = _amber_archive(amber, demo_image, runtime, tmp_path)
    other = Amber(tmp_path / "root2", tmp_path / "run2")
    try:
        other.engine.images.import_image(_demo_rootfs(amber, tmp_path), demo_image)
        rc, err = _restore(amber, base, capfd)
        assert rc == 0, err
        rc, err = _restore(other, base, capfd)
        assert rc == 0, err
        assert len(_cgroups_of(_container_id(base))) >= 2
        assert other("rm", "-f", "cnt") == 0
        assert amber.fresh_engine().containers.store.get("cnt").status == Status.RUNNING
        capfd.readouterr()
        assert amber("exec", "cnt", "true") == 0
    finally:
        other.cleanup()
        amber.cleanup()


def _demo_rootfs(amber: Amber, tmp_path: Path) -> Path:
    from amber.engine.demo_image import build_rootfs_tar

    return build_rootfs_tar(tmp_path / "demo-rootfs.tar")


def test_forged_credentials_are_obeyed_only_with_trust_archive(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The capabilities forged in core-*.img and (for the runtime to let CRIU raise them) spec.dump."""
    base = _amber_archive(amber, demo_image, runtime, tmp_path)

    def forge(ctx: hc.Ctx) -> list[hc.Entry]:
        caps = {k: hc.ALL_CAPS for k in ("bounding", "effective", "permitted")}
        forged = hc.Ctx(hc.forged_credentials(ctx, ("cap_eff", "cap_prm", "cap_bnd")), ctx.sentinel)
        return forged.with_json("spec.dump", lambda s: s["process"].update(capabilities=caps))

    evil = _hostile(base, tmp_path / "forged.tar", forge)
    rc, err = _restore(amber, evil, capfd)
    assert rc == 6 and "process.capabilities.bounding" in err and "CAP_SYS_ADMIN" in err, err
    images_only = _hostile(base, tmp_path / "forged-images.tar", hc.forged_credentials)
    rc, err = _restore(amber, images_only, capfd)
    assert rc == 6 and "pid 1: cap_eff" in err and "CAP_SYS_ADMIN" in err, err
    rc, err = _restore(amber, evil, capfd, "--trust-archive")
    assert rc == 0, err
    c = amber.fresh_engine().containers.store.get("cnt")
    status = Path(f"/proc/{c.pid}/status").read_text()
    assert f"CapEff:\t{hc.FORGED_CAPS:016x}" in status  # the opt-in really hands over what it asked for
    assert amber("rm", "-f", "cnt") == 0


def test_an_existing_cgroup_is_never_joined(
    amber: Amber, demo_image: str, runtime: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from amber.adapters import cgroups
    from amber.engine import spec as specs

    base = _amber_archive(amber, demo_image, runtime, tmp_path)
    cid = _container_id(base)
    taken = cgroups.hierarchies()[-1] / specs.cgroups_path(cid, amber.root).strip("/")
    taken.mkdir(parents=True)
    try:
        rc, err = _restore(amber, base, capfd)
        assert rc == 4 and "exists already" in err and "hint:" in err, err
        assert taken.is_dir()  # somebody else's: left alone
        assert amber.fresh_engine().containers.list(all_containers=True) == []
        assert mounts_under(amber.root) == [] and mounts_under(amber.runroot) == []
    finally:
        taken.rmdir()
    rc, err = _restore(amber, base, capfd)
    assert rc == 0, err
    assert amber("rm", "-f", "cnt") == 0
