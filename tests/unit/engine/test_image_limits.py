"""CRIU images that could grant more than the spec: rlimits and mounts (engine/image_limits.py)."""

from __future__ import annotations

import random
import resource
from pathlib import Path
from typing import Any

import pytest

from amber.adapters.criu_images import RLIM_INFINITY, ImageDir, MountPoint, Process, read_mountpoints, read_rlimits
from amber.engine import image_limits as il
from amber.errors import ArchiveError

SPEC: dict[str, Any] = {"process": {"rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]}}


def proc(pid: int, state: str = "Alive") -> Process:
    return Process(pid=pid, ppid=0, pgid=pid, sid=pid, threads=(pid,), comm="sh", task_state=state)


def images(tmp_path: Path, **decoded: list[dict[str, Any]]) -> ImageDir:
    """An ImageDir holding decoded images (as pycriu gives them); mountpoints files exist empty."""
    d = ImageDir(tmp_path, "test.tar")
    for name, entries in decoded.items():
        file = f"{name.replace('_', '-')}.img"
        d._cache[file] = entries
        if file.startswith("mountpoints-"):
            (tmp_path / file).write_bytes(b"")
    return d


def core(limits: list[Any]) -> list[dict[str, Any]]:
    return [{"tc": {"task_state": 1, "rlimits": {"rlimits": limits}}}]


def own_limits() -> list[dict[str, int]]:
    """This process's own limits, as CRIU records them (every one within what amber gives)."""
    out = []
    for i in range(16):
        soft, hard = resource.getrlimit(i)
        out.append({"cur": RLIM_INFINITY if soft < 0 else soft, "max": RLIM_INFINITY if hard < 0 else hard})
    out[7] = {"cur": 1024, "max": 1024}  # RLIMIT_NOFILE as SPEC sets it
    return out


def test_rlimits_within_amber_s_pass_and_raised_ones_are_named(tmp_path: Path) -> None:
    d = images(tmp_path, core_1=core(own_limits()))
    got = read_rlimits(d, [proc(1), proc(2, "Zombie")])
    assert [r.name for r in got][:8] == ["RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK"] + [
        "RLIMIT_CORE",
        "RLIMIT_RSS",
        "RLIMIT_NPROC",
        "RLIMIT_NOFILE",
    ]
    assert il.rlimit_violations(got, SPEC) == []
    raised = own_limits()
    raised[7] = {"cur": 1024, "max": 1 << 20}
    violations = il.rlimit_violations(read_rlimits(images(tmp_path, core_1=core(raised)), [proc(1)]), SPEC)
    assert [(v.field, v.allowed) for v in violations] == [("pid 1: RLIMIT_NOFILE", "hard <= 1024")]


def test_a_limit_the_spec_does_not_set_is_bounded_by_amber_s_own(tmp_path: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]  # unlimited here: nothing exceeds amber's
    limits = own_limits()
    limits[8] = {"cur": RLIM_INFINITY, "max": RLIM_INFINITY}
    got = il.rlimit_violations(read_rlimits(images(tmp_path, core_1=core(limits)), [proc(1)]), SPEC)
    assert [v.field for v in got] == ([] if hard == resource.RLIM_INFINITY else ["pid 1: RLIMIT_MEMLOCK"])


def test_soft_above_hard_is_refused(tmp_path: Path) -> None:
    limits = own_limits()
    limits[7] = {"cur": 2048, "max": 1024}
    got = il.rlimit_violations(read_rlimits(images(tmp_path, core_1=core(limits)), [proc(1)]), SPEC)
    assert [v.field for v in got] == ["pid 1: RLIMIT_NOFILE"]


@pytest.mark.parametrize("limits", [["x"], [{"cur": "1", "max": 2}], {"a": 1}, [{"cur": 1.5, "max": 2}]])
def test_malformed_rlimits_are_archive_errors(tmp_path: Path, limits: Any) -> None:
    with pytest.raises(ArchiveError, match="core-1.img in test.tar"):
        read_rlimits(images(tmp_path, core_1=core(limits)), [proc(1)])


def mnt(mountpoint: str, fstype: int, source: str = "x", **kw: Any) -> dict[str, Any]:
    return {"mountpoint": mountpoint, "fstype": fstype, "source": source, "root": "/", **kw}


def test_mounts_amber_makes_pass_and_the_image_s_own_sources_are_refused(tmp_path: Path) -> None:
    ok = [mnt("/", 17, "overlay"), mnt("/proc", 1), mnt("/sys", 2), mnt("/dev", 5), mnt("/dev/pts", 6)]
    ok += [mnt("/dev/mqueue", 14), mnt("/sys/fs/cgroup", 23), mnt("/etc/hosts", 0, "/dev/vda", ext_key="/etc/hosts")]
    ok += [mnt("/dev/null", 3, "udev", ext_key="/dev/null")]
    assert il.mount_violations(read_mountpoints(images(tmp_path, mountpoints_13=ok))) == []
    bad = [mnt("/etc/hosts", 16, "/dev/vda"), mnt("/x", 17, "overlay"), mnt("/dev", 3, "udev"), mnt("/k", 11)]
    bad += [mnt("/f", 99)]
    got = il.mount_violations(read_mountpoints(images(tmp_path, mountpoints_13=ok + bad)))
    assert [v.field for v in got] == [
        f"mountpoints-13.img: mount {m}" for m in ("/etc/hosts", "/x", "/dev", "/k", "/f")
    ]
    assert "a mount of type auto from /dev/vda" in got[0].asked and "unknown(99)" in got[-1].asked


def test_malformed_mountpoints_are_archive_errors(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="mountpoints-13.img in test.tar has a non-numeric fstype"):
        read_mountpoints(images(tmp_path, mountpoints_13=[mnt("/", "ext4")]))  # type: ignore[arg-type]


ODD: list[Any] = [None, 0, -1, 1 << 70, "1", 1.5, True, [], {}, [1], {"cur": 1}, "\0"]


def test_fuzzed_rlimit_and_mount_images_give_answers_or_archive_errors(tmp_path: Path) -> None:
    """Property-style (fixed seed): random shapes never raise anything but ArchiveError."""
    rng = random.Random(10)
    for _ in range(400):
        limits: Any = [{"cur": rng.choice(ODD), "max": rng.choice(ODD)} for _ in range(rng.randrange(20))]
        limits = rng.choice([limits, rng.choice(ODD)])
        entries = [
            {k: rng.choice([*ODD, "/", "/x"]) for k in ("mountpoint", "fstype", "source", "root", "ext_key")}
            for _ in range(rng.randrange(4))
        ]
        d = images(tmp_path, core_1=core(limits) if rng.random() < 0.9 else [rng.choice(ODD)], mountpoints_1=entries)
        try:
            il.rlimit_violations(read_rlimits(d, [proc(1)]), rng.choice([SPEC, {}, {"process": ODD}]))
        except ArchiveError:
            pass
        try:
            il.mount_violations(read_mountpoints(d))
        except ArchiveError:
            pass


def test_check_names_every_mount_kind() -> None:
    m = MountPoint("mountpoints-1.img", "/mnt", "fuse", "sshfs#host:", "/", external=False)
    (v,) = il.mount_violations([m])
    assert str(v).startswith(
        "mountpoints-1.img: mount /mnt: the archive asks for a mount of type fuse from sshfs#host:"
    )


PODMAN_RUNC = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures" / "podman-5.4.2" / "counter-runc.tar"


def test_host_sized_limits_from_a_bigger_host_are_lowered_not_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """podman's own images (written on a host with more memory, so a higher RLIMIT_NPROC and
    RLIMIT_SIGPENDING) are rewritten to this host's ceiling, which CRIU can set without
    CAP_SYS_RESOURCE; the images on disk then say so. Other limits are still refused."""
    import tarfile

    with tarfile.open(PODMAN_RUNC) as tar:
        for name in ("pstree.img", "core-1.img", "core-18.img"):
            f = tar.extractfile(f"checkpoint/{name}")
            assert f is not None
            (tmp_path / name).write_bytes(f.read())
    own = il._own_hard
    monkeypatch.setattr(il, "_own_hard", lambda name: 1000 if name in il.HOST_SIZED else own(name))
    d, tasks = ImageDir(tmp_path, "counter-runc.tar"), [proc(1), proc(18)]
    before = {(r.pid, r.name): (r.soft, r.hard) for r in read_rlimits(d, tasks)}
    assert before[(1, "RLIMIT_NPROC")][1] > 1000 and il.rlimit_violations(read_rlimits(d, tasks), {}) == []
    lowered = il.lower_host_sized(d, tasks, {})
    assert sorted((r.pid, r.name, r.soft, r.hard) for r in lowered) == [
        (pid, name, 1000, 1000) for pid in (1, 18) for name in ("RLIMIT_NPROC", "RLIMIT_SIGPENDING")
    ]
    after = {(r.pid, r.name): (r.soft, r.hard) for r in read_rlimits(ImageDir(tmp_path, "again"), tasks)}
    assert after[(1, "RLIMIT_NPROC")] == (1000, 1000) and after[(18, "RLIMIT_SIGPENDING")] == (1000, 1000)
    assert {k: v for k, v in after.items() if k[1] not in il.HOST_SIZED} == {
        k: v for k, v in before.items() if k[1] not in il.HOST_SIZED
    }
    assert il.lower_host_sized(ImageDir(tmp_path, "again"), tasks, {}) == []  # nothing left to lower
    assert not list(tmp_path.glob(".*"))  # no temporary image left beside them


def test_an_unlimited_host_sized_limit_is_lowered_and_a_raised_other_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(il, "_own_hard", lambda name: 500)
    limits = own_limits()
    limits[6] = {"cur": RLIM_INFINITY, "max": RLIM_INFINITY}  # RLIMIT_NPROC
    limits[8] = {"cur": RLIM_INFINITY, "max": RLIM_INFINITY}  # RLIMIT_MEMLOCK
    got = read_rlimits(images(tmp_path, core_1=core(limits)), [proc(1)])
    assert [v.field for v in il.rlimit_violations(got, {})] == [
        f"pid 1: {r.name}" for r in got if r.name not in il.HOST_SIZED and (r.hard > 500 or r.soft > 500)
    ]
    assert "pid 1: RLIMIT_MEMLOCK" in [v.field for v in il.rlimit_violations(got, {})]
    assert [(r.name, r.soft, r.hard) for r in il.host_sized_excess(got, {}) if r.name == "RLIMIT_NPROC"] == [
        ("RLIMIT_NPROC", 500, 500)
    ]
