"""The effective spec of a restored container (engine/confinement.py), what is refused
(task_credentials.py, privilege_checks.py)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from amber.adapters.criu_images import Credentials, ImageDir, Process, read_credentials
from amber.adapters.criu_memory import PAGE_SIZE, read_pagemap
from amber.engine import confinement as cf
from amber.engine import privilege_checks as pc
from amber.engine import spec as specs
from amber.engine import task_credentials as tc
from amber.errors import ArchiveError, ExitCode

AMBER_MASK = 2147747323  # podman's and amber's default capabilities, as CRIU records them


def amber_spec() -> dict[str, Any]:
    return specs.generate(
        cid="c" * 64,
        hostname="host",
        rootfs=Path("/r"),
        args=["sh"],
        env=["A=1"],
        cwd="/",
        netns=Path("/n"),
        cgroups_path="/amber/x",
    )


def podman_like() -> dict[str, Any]:
    """podman 5.4's default spec.dump, in the parts that matter here."""
    spec = amber_spec()
    spec["process"].pop("noNewPrivileges")
    spec["process"]["user"]["umask"] = 18
    spec["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000}]
    spec["linux"]["maskedPaths"] = [p for p in specs.MASKED_PATHS if p != "/sys/dev/block"]
    spec["linux"]["sysctl"] = {"net.ipv4.ping_group_range": "0 0"}
    spec["linux"]["resources"]["pids"] = {"limit": 2048}
    spec["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []}
    spec["linux"]["namespaces"][1]["path"] = "/run/netns/old"
    spec["mounts"].append({"destination": "/etc/hosts", "type": "bind", "source": "/old/hosts", "options": ["bind"]})
    spec["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["rw"]})
    return spec


def fields(confined: cf.Confined) -> set[str]:
    return {v.field for v in confined.violations}


def test_ordinary_archives_pass_and_keep_what_a_user_asks_for() -> None:
    archive = podman_like()
    archive["process"]["args"] = ["top"]
    archive["hostname"] = "old"
    confined = cf.confine(archive, amber_spec())
    assert confined.violations == ()
    spec = confined.spec
    assert spec["process"]["args"] == ["top"] and spec["hostname"] == "old"
    assert spec["process"]["noNewPrivileges"] is True
    assert set(spec["linux"]["maskedPaths"]) >= set(specs.MASKED_PATHS)
    assert spec["linux"]["seccomp"] == archive["linux"]["seccomp"]  # stricter than amber's none: kept
    assert "sysctl" not in spec["linux"]
    assert spec["linux"]["resources"]["pids"] == {"limit": 2048}
    assert all("path" not in ns for ns in spec["linux"]["namespaces"] if ns["type"] != "network")
    hosts = next(m for m in spec["mounts"] if m["destination"] == "/etc/hosts")
    assert hosts["source"] == ""  # spec.py gives it a source in the bundle
    cgroup = next(m for m in spec["mounts"] if m["destination"] == "/sys/fs/cgroup")
    assert "ro" in cgroup["options"] and "rw" not in cgroup["options"] and "nosuid" in cgroup["options"]
    assert cf.confine(amber_spec(), amber_spec()).violations == ()


def test_a_privileged_spec_is_every_field_named_and_amber_s_in_effect() -> None:
    archive = amber_spec()
    all_caps = [f"CAP_{n}" for n in tc.CAP_NUMBERS]
    archive["process"]["capabilities"] = {k: all_caps for k in cf.CAP_SETS}
    archive["process"]["noNewPrivileges"] = False
    archive["linux"]["resources"] = {"devices": [{"allow": True, "access": "rwm"}]}
    archive["linux"]["maskedPaths"] = archive["linux"]["readonlyPaths"] = []
    archive["linux"]["devices"] = [{"path": "/dev/sda", "type": "b", "major": 8, "minor": 0}]
    before = copy.deepcopy(archive)
    confined = cf.confine(archive, amber_spec())
    assert archive == before  # pure
    assert {f"process.capabilities.{s}" for s in cf.CAP_SETS} | {"linux.resources.devices", "linux.devices"} <= fields(
        confined
    )
    spec = confined.spec
    assert spec["process"]["capabilities"] == amber_spec()["process"]["capabilities"]
    assert spec["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]
    assert spec["linux"]["maskedPaths"] == specs.MASKED_PATHS and spec["process"]["noNewPrivileges"] is True


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (
            lambda s: s["mounts"].append({"destination": "/m", "type": "overlay", "options": ["lowerdir=/etc"]}),
            "mounts[/m]",
        ),
        (lambda s: s["mounts"].append({"destination": "/d", "type": "ext4", "source": "/dev/sda1"}), "mounts[/d]"),
        (lambda s: s["linux"]["namespaces"].pop(0), "linux.namespaces"),
        (lambda s: s["linux"]["namespaces"].append({"type": "user"}), "linux.namespaces"),
        (lambda s: s["linux"]["namespaces"][0].update(path="/proc/1/ns/pid"), "linux.namespaces.path"),
        (lambda s: s["linux"].update(sysctl={"kernel.core_pattern": "|/x"}), "linux.sysctl"),
        (lambda s: s["linux"].update(intelRdt={"closID": "x"}), "linux.intelRdt"),
        (lambda s: s["linux"].update(personality={"domain": "LINUX32"}), "linux.personality"),
        (lambda s: s["linux"].update(uidMappings=[]), "linux.uidMappings"),
        (lambda s: s["linux"].update(rootfsPropagation="shared"), "linux.rootfsPropagation"),
        (lambda s: s["linux"]["seccomp"].update(listenerPath="/run/x.sock"), "linux.seccomp.listenerPath"),
        (lambda s: s["process"]["rlimits"].append({"type": "RLIMIT_NOFILE", "hard": 1 << 40, "soft": 1}), None),
        (lambda s: s["process"].update(oomScoreAdj=-1000), "process.oomScoreAdj"),
        (lambda s: s["process"]["user"].update(uid="0"), "process.user"),
        (lambda s: s["process"]["user"].update(additionalGids=[-1]), "process.user"),
        (lambda s: s["process"].update(scheduler={"policy": "SCHED_FIFO"}), "process.scheduler"),
        (lambda s: s["annotations"].update({"org.criu.config": "/etc/x.conf"}), "annotations.org.criu.config"),
        (lambda s: s["annotations"].update({"run.oci.keep_original_groups": "1"}), None),
        (lambda s: s.update(hooks={"prestart": [{"path": "/bin/sh"}]}), "hooks"),
        (lambda s: s["linux"].update(cgroupsPath="/amber/amber-k-other/x"), "linux.cgroupsPath"),
        (lambda s: s["linux"].update(cgroupsPath="/a/../b/x"), "linux.cgroupsPath"),
    ],
)
def test_what_amber_does_not_make_is_a_violation(change: Any, field: str | None) -> None:
    archive = amber_spec()
    archive["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW"}
    change(archive)
    confined = cf.confine(archive, amber_spec())
    assert confined.violations, archive
    if field is not None:
        assert field in fields(confined)


def test_extra_cgroup_namespace_and_amber_mount_sources() -> None:
    archive = amber_spec()
    archive["linux"]["namespaces"].append({"type": "cgroup"})
    archive["mounts"][0]["source"] = "/etc"
    confined = cf.confine(archive, amber_spec())
    assert confined.violations == ()
    assert {"type": "cgroup"} in confined.spec["linux"]["namespaces"]
    assert confined.spec["mounts"][0]["source"] == "proc"


def creds(**kw: Any) -> Credentials:
    base = Credentials(
        1, 1, (0, 0, 0, 0), (0, 0, 0, 0), (), AMBER_MASK, AMBER_MASK, 0, AMBER_MASK, 0, 0, True, "disabled"
    )
    return dataclasses.replace(base, **kw)


def test_cap_masks_are_the_kernel_s() -> None:
    assert tc.cap_mask(specs.CAPABILITIES) == AMBER_MASK
    assert set(tc.cap_names(AMBER_MASK)) == set(specs.CAPABILITIES)
    assert tc.cap_names(1 << 60) == ["unknown bits 0x80000<<41"]


def test_credentials_within_the_spec_pass_and_beyond_are_named() -> None:
    spec = amber_spec()
    assert tc.credential_violations([creds()], spec, strict_nnp=True) == []
    assert tc.credential_violations([creds(cap_eff=0, cap_prm=0, uids=(1000,) * 4)], spec, strict_nnp=True) == []
    bad = tc.credential_violations([creds(tid=7, cap_eff=(1 << 41) - 1, cap_amb=1 << 21)], spec, strict_nnp=True)
    assert {v.field for v in bad} == {"pid 1 thread 7: cap_eff", "pid 1 thread 7: cap_amb"}
    assert "CAP_SYS_ADMIN" in bad[0].asked
    assert tc.credential_violations([creds(no_new_privs=False)], spec, strict_nnp=False) == []
    assert [v.field for v in tc.credential_violations([creds(no_new_privs=False)], spec, strict_nnp=True)] == [
        "pid 1: no_new_privs"
    ]
    filtered = {**spec, "linux": {**spec["linux"], "seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}}}
    assert [v.field for v in tc.credential_violations([creds()], filtered, strict_nnp=False)] == ["pid 1: seccomp_mode"]
    assert tc.credential_violations([creds(seccomp_mode="filter")], spec, strict_nnp=False) == []  # stricter: fine
    user = {**spec, "process": {**spec["process"], "user": {"uid": 1000, "gid": 1000}}}
    fields = {v.field for v in tc.credential_violations([creds()], user, strict_nnp=False)}
    assert fields == {"pid 1: uids", "pid 1: gids"}


def test_refusal_names_the_fields_with_exit_6_and_a_hint() -> None:
    pc.refuse([], "a.tar")
    violations = [cf.Violation("linux.namespaces", "no pid namespace", "all of amber's")]
    with pytest.raises(ArchiveError) as info:
        pc.refuse(violations, "a.tar")
    assert info.value.exit_code == ExitCode.BAD_ARCHIVE
    assert "linux.namespaces" in info.value.message and "a.tar" in info.value.message
    assert info.value.hint and "--trust-archive" in info.value.hint
    assert pc.privileges_row([]).reason.startswith("ok")
    assert pc.privileges_row(violations).reason == "asks for more than amber allows: linux.namespaces"


def test_check_spec_obeys_trust() -> None:
    archive = amber_spec()
    archive["linux"]["namespaces"].pop(0)
    with pytest.raises(ArchiveError):
        pc.check_spec(archive, "a.tar", trust=False)
    assert pc.check_spec(archive, "a.tar", trust=True).violations


def test_cgroups_are_keyed_by_the_amber_root() -> None:
    a, b = specs.cgroups_path("x", Path("/var/lib/amber")), specs.cgroups_path("x", Path("/tmp/other"))
    assert a != b and a.endswith("-x") and a.startswith("/amber/amber-")
    key = specs.root_key(Path("/tmp/other"))
    assert specs.restore_cgroups_path("/libpod_parent/libpod-x", "y", "/d", key) == f"/libpod_parent/amber-{key}-y"
    assert specs.restore_cgroups_path("/../../x/y", "y", "/d", key) == "/d"


# ===================================== decoding the credentials ==============================
def _images(tmp_path: Path, **cores: dict[str, Any]) -> ImageDir:
    """An ImageDir holding decoded core images (as pycriu gives them) without writing any."""
    d = ImageDir(tmp_path, "test.tar")
    for name, entry in cores.items():
        d._cache[f"{name.replace('_', '-')}.img"] = [entry]
    return d


def _core(mode: Any = "filter", **creds: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"uid": 0, "gid": 0, "euid": 0, "egid": 0, "suid": 0, "sgid": 0, "fsuid": 0, "fsgid": 0}
    base |= {"cap_inh": [0, 0], "cap_prm": [AMBER_MASK, 0], "cap_eff": [AMBER_MASK, 0], "cap_bnd": [AMBER_MASK, 0]}
    return {"tc": {"task_state": 1}, "thread_core": {"creds": base | creds, "seccomp_mode": mode}}


def proc(pid: int, threads: tuple[int, ...], state: str = "Alive") -> Process:
    return Process(pid=pid, ppid=0, pgid=pid, sid=pid, threads=threads, comm="sh", task_state=state)


def test_read_credentials_every_thread(tmp_path: Path) -> None:
    d = _images(tmp_path, core_1=_core(), core_2=_core(2, cap_eff=[0xFFFFFFFF, 0x1FF], no_new_privs=1, groups=[5]))
    got = read_credentials(d, [proc(1, (1, 2)), proc(3, (3,), "Zombie")])
    assert [(c.pid, c.tid) for c in got] == [(1, 1), (1, 2)]
    assert got[0].cap_eff == AMBER_MASK and got[0].cap_amb == 0 and got[0].seccomp_mode == "filter"
    assert got[1].cap_eff == (0x1FF << 32) | 0xFFFFFFFF and got[1].no_new_privs and got[1].groups == (5,)
    assert tc.credential_violations(got[:1], amber_spec(), strict_nnp=False) == []
    assert [v.field for v in tc.credential_violations(got, amber_spec(), strict_nnp=False)] == [
        "pid 1 thread 2: cap_eff"
    ]


@pytest.mark.parametrize(
    "core",
    [
        _core(uid="0"),
        _core(cap_bnd="all"),
        _core(cap_eff=[1.5]),
        _core(mode="unconfined"),
        {"tc": {"task_state": 1}},
    ],
)
def test_malformed_credentials_are_archive_errors(tmp_path: Path, core: dict[str, Any]) -> None:
    with pytest.raises(ArchiveError, match="core-1.img in test.tar"):
        read_credentials(_images(tmp_path, core_1=core), [proc(1, (1,))])


def test_a_thread_without_its_core_image_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="core-2.img"):
        read_credentials(_images(tmp_path, core_1=_core()), [proc(1, (1, 2))])


def test_memory_numbers_follow_the_same_policy(tmp_path: Path) -> None:
    d = ImageDir(tmp_path, "test.tar")
    d._cache["pagemap-1.img"] = [{"pages_id": 1}, {"vaddr": "0x1000", "nr_pages": 1, "flags": 4}]
    with pytest.raises(ArchiveError, match="pagemap-1.img in test.tar has a non-numeric vaddr"):
        read_pagemap(d, 1)
    d._cache["pagemap-1.img"] = [{"pages_id": 1}, {"vaddr": 4096, "compat_nr_pages": 2, "flags": 4}]
    pagemap = read_pagemap(d, 1)
    assert pagemap is not None and pagemap.memory_size == 2 * PAGE_SIZE


ODD_VALUES: list[Any] = [None, 5, "x", True, [], {}, [5], ["x"], {"a": 5}, [{"type": 5}], [None]]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:2]):
            out += _paths(v, (*prefix, i))
    return out


def test_any_shape_gives_violations_never_a_crash() -> None:
    """Every field of a full spec replaced by odd values: confine and the credential check answer."""
    full = podman_like()
    full["linux"]["resources"]["devices"] = [{"allow": False}]
    full["process"]["user"]["additionalGids"] = [1]
    for path in _paths(full):
        for odd in ODD_VALUES:
            archive = copy.deepcopy(full)
            node = archive
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = odd
            confined = cf.confine(archive, amber_spec())
            tc.credential_violations([creds()], confined.spec, strict_nnp=True)
            tc.credential_violations([creds()], archive, strict_nnp=True)


def test_host_sized_rlimits_from_a_bigger_host_are_lowered_to_this_one_s() -> None:
    """podman's spec.dump records the RLIMIT_NPROC of the host that wrote it (the kernel sizes it
    from memory): above this host's it is lowered, not refused; RLIMIT_NOFILE above is refused."""
    import resource

    own = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    if own == resource.RLIM_INFINITY:
        pytest.skip("not applicable here: RLIMIT_NPROC is unlimited, nothing is above it")
    archive = podman_like()
    archive["process"]["rlimits"].append({"type": "RLIMIT_NPROC", "hard": own + 2, "soft": own + 2})
    confined = cf.confine(archive, amber_spec())
    assert not confined.violations
    kept = {r["type"]: r for r in confined.spec["process"]["rlimits"]}
    assert kept["RLIMIT_NPROC"] == {"type": "RLIMIT_NPROC", "hard": own, "soft": own}
    archive["process"]["rlimits"].append({"type": "RLIMIT_NOFILE", "hard": 1 << 40, "soft": 1})
    assert "process.rlimits.RLIMIT_NOFILE" in fields(cf.confine(archive, amber_spec()))
