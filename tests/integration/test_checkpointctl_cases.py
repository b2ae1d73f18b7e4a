"""checkpointctl's own bats cases (checkpoint-restore/checkpointctl test/checkpointctl.bats), run
against `amber archive`. Each case keeps checkpointctl's name as its id; the archives are built
as the bats file builds them, from the pieces of a real podman checkpoint (the CRIU images of the
counter fixture instead of checkpointctl's piggie images). Left out: the plugin mechanism.
amber's messages are its own (an `error:` line and a hint), so a failing case checks the exit
code and the part of the message that names what is wrong."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from amber.cli import main
from tests.conftest import FIXTURES

pytestmark = pytest.mark.root

SOURCE = FIXTURES / "counter-runc.tar"
CRIO_ANNOTATIONS = {
    "io.container.manager": "cri-o",
    "io.kubernetes.cri-o.Metadata": json.dumps({"name": "container-name"}),
    "io.kubernetes.pod.name": "pod-name",
    "io.kubernetes.pod.namespace": "default",
    "io.kubernetes.cri-o.Created": "2026-01-01T00:00:00Z",
}


def _members() -> dict[str, bytes]:
    with tarfile.open(SOURCE) as tf:
        return {
            m.name: tf.extractfile(m).read()  # type: ignore[union-attr]
            for m in tf.getmembers()
            if m.isfile()
        }


PIECES = _members()


def _spec(annotations: dict[str, str] | None = None) -> bytes:
    spec = json.loads(PIECES["spec.dump"])
    if annotations is not None:
        spec["annotations"] = {**spec.get("annotations", {}), **annotations}
    return json.dumps(spec).encode()


def build(
    dest: Path,
    *,
    config: bytes | None = PIECES["config.dump"],
    spec: bytes | None = PIECES["spec.dump"],
    checkpoint: bool = True,
    images: tuple[str, ...] = (),
    extra: dict[str, bytes] | None = None,
    gz: bool = False,
) -> Path:
    """A tar as `( cd DIR && tar cf ... . )` makes it, of the pieces given; `images` are the
    prefixes of the checkpoint/ images to copy (pstree, core-, pagemap-...)."""
    files: dict[str, bytes] = {}
    if config is not None:
        files["config.dump"] = config
    if spec is not None:
        files["spec.dump"] = spec
    for name, data in PIECES.items():
        if name.startswith("checkpoint/") and any(name[len("checkpoint/") :].startswith(p) for p in images):
            files[name] = data
    files.update(extra or {})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        if checkpoint:
            d = tarfile.TarInfo("checkpoint")
            d.type, d.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(d)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tf.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    dest.write_bytes(gzip.compress(data) if gz else data)
    return dest


TREE = ("pstree", "core-")
MEM = (*TREE, "pagemap-", "pages-", "mm-")
FILES = (*TREE, "files", "fs-", "ids-", "fdinfo-")


class Run:
    def __init__(self, capsys: pytest.CaptureFixture[str], tmp: Path) -> None:
        self.capsys, self.tmp = capsys, tmp

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        rc = main(["--root", str(self.tmp / "root"), "--runroot", str(self.tmp / "run"), "archive", *argv])
        out = self.capsys.readouterr()
        return rc, out.out, out.err


@pytest.fixture
def ctl(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Run:
    return Run(capsys, tmp_path)


def _usage_exit(fn: Callable[[], Any]) -> int:
    with pytest.raises(SystemExit) as exc:
        fn()
    return int(exc.value.code or 0)


# ===================================== the command itself =====================================
def test_run_checkpointctl(capsys: pytest.CaptureFixture[str]) -> None:
    """Run checkpointctl"""
    assert _usage_exit(lambda: main(["archive", "--help"])) == 0
    assert "show" in capsys.readouterr().out


def test_run_checkpointctl_with_wrong_parameter(capsys: pytest.CaptureFixture[str]) -> None:
    """Run checkpointctl with wrong parameter"""
    assert _usage_exit(lambda: main(["archive", "show", "--wrong-parameter", "x"])) == 2
    assert "--wrong-parameter" in capsys.readouterr().err


# ===================================== show ===================================================
def test_show_with_non_existing_directory(ctl: Run) -> None:
    """Run checkpointctl show with non existing directory"""
    rc, _, err = ctl("show", "/does-not-exist")
    assert rc != 0 and "/does-not-exist" in err


def test_show_with_empty_tar_file(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl show with empty tar file"""
    (tmp_path / "empty.tar").touch()
    rc, _, err = ctl("show", str(tmp_path / "empty.tar"))
    assert rc != 0 and "empty.tar" in err


def test_show_with_tar_file_with_empty_config_dump(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl show with tar file with empty config.dump"""
    rc, _, err = ctl("show", str(build(tmp_path / "t.tar", config=b"", spec=None)))
    assert rc != 0 and "config.dump" in err


def test_show_with_valid_config_dump_and_no_spec_dump(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl show with tar file with valid config.dump and no spec.dump"""
    rc, _, err = ctl("show", str(build(tmp_path / "t.tar", spec=None)))
    assert rc != 0 and "spec.dump" in err


def test_show_with_valid_config_dump_and_empty_spec_dump(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl show with tar file with valid config.dump and empty spec.dump"""
    rc, _, err = ctl("show", str(build(tmp_path / "t.tar", spec=b"")))
    assert rc != 0 and "spec.dump" in err


def test_show_with_valid_dumps_and_no_checkpoint_directory(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl show with tar file with valid config.dump and valid spec.dump and no checkpoint directory"""
    rc, _, err = ctl("show", str(build(tmp_path / "t.tar", checkpoint=False)))
    assert rc != 0 and "checkpoint" in err


def test_show_with_valid_dumps_and_checkpoint_directory(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl show with tar file with valid config.dump and valid spec.dump and checkpoint directory"""
    rc, out, err = ctl("show", str(build(tmp_path / "t.tar")))
    assert rc == 0, err
    assert "Podman" in out.splitlines()[4]


def test_show_with_tar_file_from_containerd(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl show with tar file from containerd with valid config.dump and valid spec.dump and
    checkpoint directory"""
    rc, out, err = ctl("show", str(build(tmp_path / "t.tar", spec=b"{}")))
    assert rc == 0, err
    assert "containerd" in out.splitlines()[4]


def test_show_crio_and_no_checkpoint_directory(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl show with tar file with valid config.dump and valid spec.dump (CRI-O) and no
    checkpoint directory"""
    rc, _, err = ctl("show", str(build(tmp_path / "t.tar", spec=_spec(CRIO_ANNOTATIONS), checkpoint=False)))
    assert rc != 0 and "checkpoint" in err


def test_show_crio_and_checkpoint_directory(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl show with tar file with valid config.dump and valid spec.dump (CRI-O) and checkpoint
    directory"""
    rc, out, err = ctl("show", str(build(tmp_path / "t.tar", spec=_spec(CRIO_ANNOTATIONS))))
    assert rc == 0, err
    assert "CRI-O" in out.splitlines()[4]


def test_show_with_tar_file_compressed(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl show with tar file compressed"""
    rc, out, err = ctl("show", str(build(tmp_path / "t.tar.gz", gz=True)))
    assert rc == 0, err
    assert "Podman" in out.splitlines()[4]


def _corrupt(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[2:12] = bytes(range(0xA0, 0xAA))
    path.write_bytes(bytes(data))
    return path


def test_show_with_tar_file_corrupted(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl show with tar file corrupted"""
    rc, _, err = ctl("show", str(_corrupt(build(tmp_path / "t.tar"))))
    assert rc != 0 and "t.tar" in err


def test_show_with_tar_file_compressed_and_corrupted(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl show with tar file compressed and corrupted"""
    rc, _, err = ctl("show", str(_corrupt(build(tmp_path / "t.tar.gz", gz=True))))
    assert rc != 0 and "t.tar.gz" in err


def _rootfs_diff() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("test.pid")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"1\n"))
    return buf.getvalue()


def test_show_with_tar_file_and_rootfs_diff_tar_file(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl show with tar file and rootfs-diff tar file"""
    rc, out, err = ctl("show", str(build(tmp_path / "t.tar", extra={"rootfs-diff.tar": _rootfs_diff()})))
    assert rc == 0, err
    assert "ROOT FS DIFF SIZE" in out.splitlines()[3]


def test_show_with_multiple_tar_files(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl show with multiple tar files"""
    rc, out, err = ctl("show", str(build(tmp_path / "t1.tar")), str(build(tmp_path / "t2.tar")))
    assert rc == 0, err
    rows = [line for line in out.splitlines() if "Podman" in line]
    assert len(rows) == 2


# ===================================== inspect ================================================
def _lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.strip()]


def test_inspect_with_invalid_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Run checkpointctl inspect with invalid format"""
    path = build(tmp_path / "t.tar", config=b"", spec=None)
    assert _usage_exit(lambda: main(["archive", "inspect", str(path), "--format=invalid"])) == 2
    assert "invalid" in capsys.readouterr().err


def test_inspect_with_tar_file_with_empty_config_dump(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file with empty config.dump"""
    rc, _, err = ctl("inspect", str(build(tmp_path / "t.tar", config=b"", spec=None)))
    assert rc != 0 and "config.dump" in err


def test_inspect_with_valid_config_dump_and_no_spec_dump(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file with valid config.dump and no spec.dump"""
    rc, _, err = ctl("inspect", str(build(tmp_path / "t.tar", spec=None)))
    assert rc != 0 and "spec.dump" in err


def test_inspect_with_valid_config_dump_and_empty_spec_dump(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file with valid config.dump and empty spec.dump"""
    rc, _, err = ctl("inspect", str(build(tmp_path / "t.tar", spec=b"")))
    assert rc != 0 and "spec.dump" in err


def test_inspect_stats_and_missing_stats_dump(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and --stats and missing stats-dump"""
    rc, _, err = ctl("inspect", str(build(tmp_path / "t.tar")), "--stats")
    assert rc != 0 and "stats-dump" in err


def test_inspect_stats_and_invalid_stats_dump(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and --stats and invalid stats-dump"""
    rc, _, err = ctl("inspect", str(build(tmp_path / "t.tar", extra={"stats-dump": PIECES["spec.dump"]})), "--stats")
    assert rc != 0 and "stats-dump" in err


def test_inspect_stats_and_valid_stats_dump(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and --stats and valid stats-dump"""
    rc, out, err = ctl("inspect", str(build(tmp_path / "t.tar", extra={"stats-dump": PIECES["stats-dump"]})), "--stats")
    assert rc == 0, err
    assert "CRIU dump statistics" in out and "Memwrite time" in out


def test_inspect_mounts_and_valid_spec_dump(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and --mounts and valid spec.dump"""
    rc, out, err = ctl("inspect", str(build(tmp_path / "t.tar")), "--mounts")
    assert rc == 0, err
    assert "Overview of mounts" in out and "Destination" in out and "proc" in out


def test_inspect_ps_tree(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and --ps-tree"""
    rc, out, err = ctl("inspect", str(build(tmp_path / "t.tar", images=TREE)), "--ps-tree")
    assert rc == 0, err
    lines = _lines(out)
    i = next(n for n, line in enumerate(lines) if "Process tree" in line)
    assert "sh" in lines[i + 1]


def test_inspect_ps_tree_and_missing_pstree_img(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and --ps-tree and missing pstree.img"""
    rc, _, err = ctl("inspect", str(build(tmp_path / "t.tar")), "--ps-tree")
    assert rc != 0 and "pstree.img" in err


def test_inspect_ps_tree_cmd(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and --ps-tree-cmd"""
    rc, out, err = ctl("inspect", str(build(tmp_path / "t.tar", images=MEM)), "--ps-tree-cmd")
    assert rc == 0, err
    assert "sh -c i=0; while :;" in out


def test_inspect_ps_tree_cmd_as_non_root(tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and --ps-tree-cmd as non-root"""
    import os
    import subprocess
    import sys
    import tempfile

    from tests.conftest import REPO

    with tempfile.TemporaryDirectory(prefix="amber-ctl-") as d:
        os.chmod(d, 0o755)
        path = build(Path(d) / "t.tar", images=MEM)
        path.chmod(0o644)
        done = subprocess.run(
            [
                str(shutil.which("runuser")),
                "-u",
                "nobody",
                "--",
                sys.executable,
                "-m",
                "amber",
                "archive",
                "inspect",
                str(path),
                "--ps-tree-cmd",
            ],
            capture_output=True,
            text=True,
            env={"PYTHONPATH": str(REPO / "src"), "HOME": d, "TMPDIR": d, "PATH": "/usr/bin:/bin"},
            check=False,
        )
    assert done.returncode == 0, done.stderr
    assert "sh -c i=0" in done.stdout


def test_inspect_ps_tree_cmd_and_missing_pages(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and --ps-tree-cmd and missing pages-*.img"""
    rc, _, err = ctl("inspect", str(build(tmp_path / "t.tar", images=(*TREE, "pagemap-", "mm-"))), "--ps-tree-cmd")
    assert rc != 0 and "pages" in err


def test_inspect_ps_tree_env(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and --ps-tree-env"""
    rc, out, err = ctl("inspect", str(build(tmp_path / "t.tar", images=MEM)), "--ps-tree-env")
    assert rc == 0, err
    assert "Environment variables" in out and "PATH=" in out


def test_inspect_ps_tree_env_and_missing_pages(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and --ps-tree-env and missing pages-*.img"""
    rc, _, err = ctl("inspect", str(build(tmp_path / "t.tar", images=(*TREE, "pagemap-", "mm-"))), "--ps-tree-env")
    assert rc != 0 and "pages" in err


def test_inspect_files(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and --files"""
    rc, out, err = ctl("inspect", str(build(tmp_path / "t.tar", images=FILES)), "--files")
    assert rc == 0, err
    assert "[REG 0]" in out and "[cwd]" in out and "[root]" in out


def test_inspect_files_and_missing_files_img(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and --files and missing files.img"""
    rc, _, err = ctl("inspect", str(build(tmp_path / "t.tar", images=TREE)), "--files")
    assert rc != 0 and "files.img" in err


def test_inspect_sockets(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and --sockets (the counter has none: no section)"""
    rc, out, err = ctl("inspect", str(build(tmp_path / "t.tar", images=FILES)), "--sockets")
    assert rc == 0, err
    assert "Process tree" in out and "Open sockets" not in out


def test_inspect_sockets_and_missing_files_img(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and --sockets and missing files.img"""
    rc, _, err = ctl("inspect", str(build(tmp_path / "t.tar", images=TREE)), "--sockets")
    assert rc != 0 and "files.img" in err


def test_inspect_ps_tree_and_valid_pid(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and --ps-tree and valid PID"""
    rc, out, err = ctl("inspect", str(build(tmp_path / "t.tar", images=TREE)), "--ps-tree", "--pid", "1")
    assert rc == 0, err
    assert "Process tree" in out and "[1]" in out


def test_inspect_ps_tree_and_invalid_pid(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and --ps-tree and invalid PID"""
    rc, _, err = ctl("inspect", str(build(tmp_path / "t.tar", images=TREE)), "--ps-tree", "--pid", "99999")
    assert rc != 0 and "no process with PID 99999" in err


def test_inspect_all(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and --all and valid spec.dump and valid stats-dump"""
    path = build(tmp_path / "t.tar", images=(*MEM, *FILES), extra={"stats-dump": PIECES["stats-dump"]})
    rc, out, err = ctl("inspect", str(path), "--all")
    assert rc == 0, err
    for message in ("CRIU dump statistics", "Memwrite time", "Process tree", "[REG 0]", "[cwd]", "[root]"):
        assert message in out
    for message in ("Overview of mounts", "Destination", "proc", "/etc/hostname"):
        assert message in out


def test_inspect_no_checkpoint_directory(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file with valid config.dump and valid spec.dump and no checkpoint directory"""
    rc, _, err = ctl("inspect", str(build(tmp_path / "t.tar", checkpoint=False)))
    assert rc != 0 and "checkpoint directory is missing" in err


def test_inspect_checkpoint_directory(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file with valid config.dump and valid spec.dump and checkpoint directory"""
    rc, out, err = ctl("inspect", str(build(tmp_path / "t.tar")))
    assert rc == 0, err
    assert "Engine: Podman" in out


NETWORK_STATUS = {
    "podman": {
        "interfaces": {
            "eth0": {
                "subnets": [{"ipnet": "10.88.0.9/16", "gateway": "10.88.0.1"}],
                "mac_address": "f2:99:8d:fb:5a:57",
            }
        }
    }
}
NETWORK_STATUS_MULTI = {
    "net1": {
        "interfaces": {
            "eth0": {"subnets": [{"ipnet": "10.89.0.2/24", "gateway": "10.89.0.1"}], "mac_address": "32:ba:b8:45:bc:84"}
        }
    },
    "net2": {
        "interfaces": {
            "eth1": {"subnets": [{"ipnet": "10.89.1.2/24", "gateway": "10.89.1.1"}], "mac_address": "5e:b7:fe:ee:e0:d8"}
        }
    },
}


def _net(status: Any) -> dict[str, bytes]:
    return {"network.status": json.dumps(status).encode()}


def test_inspect_network_status(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file with valid config.dump and valid spec.dump and network.status"""
    rc, out, err = ctl("inspect", str(build(tmp_path / "t.tar", extra=_net(NETWORK_STATUS))))
    assert rc == 0, err
    for text in (
        "Network Interfaces",
        "podman (eth0)",
        "IP: 10.88.0.9/16",
        "MAC: f2:99:8d:fb:5a:57",
        "Gateway: 10.88.0.1",
    ):
        assert text in out


def test_inspect_json_network_status(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with json format and network.status"""
    rc, out, err = ctl("inspect", str(build(tmp_path / "t.tar", extra=_net(NETWORK_STATUS))), "--format=json")
    assert rc == 0, err
    d = json.loads(out)[0]
    assert d["ip"] == "10.88.0.9" and d["mac"] == "f2:99:8d:fb:5a:57"
    net = d["networks"][0]
    assert net["name"] == "podman" and net["interfaces"]["eth0"] == {
        "ip": "10.88.0.9/16",
        "mac": "f2:99:8d:fb:5a:57",
        "gateway": "10.88.0.1",
    }


def test_inspect_multi_network_status(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file with valid config.dump and valid spec.dump and multi-network
    network.status"""
    rc, out, err = ctl("inspect", str(build(tmp_path / "t.tar", extra=_net(NETWORK_STATUS_MULTI))))
    assert rc == 0, err
    for text in ("net1 (eth0)", "IP: 10.89.0.2/24", "IP: 10.89.1.2/24", "MAC: 32:ba:b8:45:bc:84", "Gateway: 10.89.1.1"):
        assert text in out


def test_inspect_json_multi_network_status(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with json format and multi-network network.status"""
    rc, out, err = ctl("inspect", str(build(tmp_path / "t.tar", extra=_net(NETWORK_STATUS_MULTI))), "--format=json")
    assert rc == 0, err
    d = json.loads(out)[0]
    assert d["ip"] == "10.89.0.2, 10.89.1.2" and d["mac"] == "32:ba:b8:45:bc:84, 5e:b7:fe:ee:e0:d8"


def test_inspect_broken_network_status(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file with broken network.status"""
    rc, out, err = ctl("inspect", str(build(tmp_path / "t.tar", extra={"network.status": b"not-valid-json\n"})))
    assert rc == 0, err
    assert "Engine: Podman" in out


def test_inspect_containerd(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file from containerd with valid config.dump and valid spec.dump and
    checkpoint directory"""
    rc, out, err = ctl("inspect", str(build(tmp_path / "t.tar", spec=b"{}", extra={"status": b"{}"})))
    assert rc == 0, err
    assert "Engine: containerd" in out


def test_inspect_crio(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file with valid config.dump and valid spec.dump (CRI-O) and
    checkpoint directory"""
    rc, out, err = ctl("inspect", str(build(tmp_path / "t.tar", spec=_spec(CRIO_ANNOTATIONS))))
    assert rc == 0, err
    assert "Engine: CRI-O" in out


def test_inspect_rootfs_diff(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with tar file and rootfs-diff tar file"""
    rc, out, err = ctl("inspect", str(build(tmp_path / "t.tar", extra={"rootfs-diff.tar": _rootfs_diff()})))
    assert rc == 0, err
    assert "Root FS diff size" in out


def test_inspect_multiple_tar_files(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with multiple tar files"""
    rc, out, err = ctl("inspect", str(build(tmp_path / "t1.tar")), str(build(tmp_path / "t2.tar")))
    assert rc == 0, err
    assert out.count("Engine: Podman") == 2


def test_inspect_json_format(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl inspect with json format"""
    path = build(tmp_path / "t.tar", images=("",), extra={"stats-dump": PIECES["stats-dump"]})
    rc, out, err = ctl("inspect", str(path), "--format=json")
    assert rc == 0, err
    assert json.loads(out)[0]["engine"] == "Podman"
    rc, out, _ = ctl("inspect", str(path), "--format=json", "--ps-tree")
    tree = json.loads(out)[0]["process_tree"]
    assert tree["command"] == "sh" and tree["children"][0]["command"] == "sleep"
    rc, out, _ = ctl("inspect", str(path), "--format=json", "--all")
    assert json.loads(out)[0]["process_tree"]["environment_variables"]["container"] == "podman"


# ===================================== memparse ===============================================
def test_memparse(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl memparse with tar file"""
    rc, out, err = ctl("memparse", str(build(tmp_path / "t.tar", images=(*TREE, "pagemap-", "mm-"))))
    assert rc == 0, err
    assert "sh" in _lines(out)[2]


def test_memparse_missing_pstree_img(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl memparse with tar file and missing pstree.img"""
    rc, _, err = ctl("memparse", str(build(tmp_path / "t.tar", images=("core-", "pagemap-", "mm-"))))
    assert rc != 0 and "pstree.img" in err


def test_memparse_valid_pid(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl memparse with tar file and valid PID"""
    import re

    rc, out, err = ctl("memparse", str(build(tmp_path / "t.tar", images=MEM)), "--pid=1")
    assert rc == 0, err
    line = _lines(out)[3]
    assert re.match(r"^[0-9a-fA-F]{16}\s\s([0-9a-fA-F]{2}\s*)+\s\s\|.*\|$", line), line


def test_memparse_search_invalid_pid(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl memparse --search=PATH with invalid PID"""
    rc, _, err = ctl("memparse", "--search=PATH", str(build(tmp_path / "t.tar", images=MEM)), "--pid=999")
    assert rc != 0 and "no process with PID 999" in err


def test_memparse_search_negative_context(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl memparse with --search=PATH and --context=-1"""
    rc, _, err = ctl("memparse", "--search=PATH", "--context=-1", str(build(tmp_path / "t.tar", images=MEM)), "--pid=1")
    assert rc != 0 and "0 or more" in err


def test_memparse_search_non_existing_pattern(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl memparse with --search=NON_EXISTING_PATTERN"""
    rc, out, err = ctl(
        "memparse", "--search=NON_EXISTING_PATTERN", str(build(tmp_path / "t.tar", images=MEM)), "--pid=1"
    )
    assert rc == 0, err
    assert "No matches" in _lines(out)[0]


def test_memparse_search_with_context(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl memparse with --search=PATH and --context=10 flags"""
    rc, out, err = ctl(
        "memparse", "--search=PATH", "--context=10", str(build(tmp_path / "t.tar", images=MEM)), "--pid=1"
    )
    assert rc == 0, err
    assert "PATH" in out


def test_memparse_search_regex(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl memparse with --search-regex='HOME=([^?]+)' (the counter's environment has PATH=)"""
    rc, out, err = ctl("memparse", "--search-regex=PATH=([^?]+)", str(build(tmp_path / "t.tar", images=MEM)), "--pid=1")
    assert rc == 0, err
    assert "PATH" in _lines(out)[1]


def test_memparse_invalid_pid(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl memparse with tar file and invalid PID"""
    rc, _, err = ctl("memparse", str(build(tmp_path / "t.tar", images=MEM)), "--pid=9999")
    assert rc != 0 and "no process with PID 9999" in err


# ===================================== list ===================================================
LIST_SPEC = _spec(CRIO_ANNOTATIONS)


def test_list_with_empty_directory(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl list with empty directory"""
    (tmp_path / "empty").mkdir()
    rc, out, err = ctl("list", str(tmp_path / "empty") + "/")
    assert rc == 0, err
    assert "No checkpoints found" in out.splitlines()[0]


def test_list_with_non_existing_directory(ctl: Run) -> None:
    """Run checkpointctl list with non existing directory"""
    rc, out, err = ctl("list", "/does-not-exist")
    assert rc == 0, err
    assert "No checkpoints found" in out.splitlines()[0]


def test_list_with_empty_tar_file(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl list with empty tar file"""
    (tmp_path / "checkpoint-nginx-empty.tar").touch()
    rc, out, err = ctl("list", str(tmp_path))
    assert rc == 0, err
    assert out.splitlines()[0] == f"Listing checkpoints in path: {tmp_path}"
    assert "Error extracting information from" in err and "checkpoint-nginx-empty.tar" in err


def test_list_valid_spec_and_empty_config(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl list with tar file with valid spec.dump and empty config.dump"""
    build(tmp_path / "checkpoint-config.tar", config=b"", spec=LIST_SPEC)
    rc, _, err = ctl("list", str(tmp_path))
    assert rc == 0
    assert f"Error extracting information from {tmp_path}/checkpoint-config.tar: " in err and "config.dump" in err


def test_list_valid_config_and_empty_spec(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl list with tar file with valid config.dump and empty spec.dump"""
    build(tmp_path / "checkpoint-config.tar", spec=b"")
    rc, _, err = ctl("list", str(tmp_path))
    assert rc == 0
    assert f"Error extracting information from {tmp_path}/checkpoint-config.tar: " in err and "spec.dump" in err


def test_list_valid_config_and_spec(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl list with tar file with valid config.dump and spec.dump"""
    build(tmp_path / "checkpoint-valid-config.tar", spec=LIST_SPEC)
    modified = _spec({**CRIO_ANNOTATIONS, "io.kubernetes.pod.name": "modified-pod-name"})
    build(tmp_path / "checkpoint-valid-config-modified.tar", spec=modified)
    build(tmp_path / "not-a-checkpoint.tar", spec=LIST_SPEC)  # not named checkpoint-*: not listed
    rc, out, err = ctl("list", str(tmp_path))
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == f"Listing checkpoints in path: {tmp_path}"
    assert lines[1].split() == ["NAMESPACE", "POD", "CONTAINER", "ENGINE", "TIME", "CHECKPOINTED", "CHECKPOINT", "NAME"]
    for line, pod, name in (
        (lines[2], "modified-pod-name", "checkpoint-valid-config-modified.tar"),
        (lines[3], "pod-name", "checkpoint-valid-config.tar"),
    ):
        for text in ("default", pod, "container-name", "CRI-O", name):
            assert text in line
    assert len(lines) == 4


# ===================================== diff ===================================================
def _pair(tmp_path: Path, *, gz: bool = False, **kw: Any) -> tuple[str, str]:
    suffix = ".tar.gz" if gz else ".tar"
    return str(build(tmp_path / f"test1{suffix}", gz=gz, **kw)), str(build(tmp_path / f"test2{suffix}", gz=gz, **kw))


def test_diff_with_no_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    """Run checkpointctl diff with no arguments"""
    assert _usage_exit(lambda: main(["archive", "diff"])) == 2
    assert "required" in capsys.readouterr().err


def test_diff_with_only_one_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Run checkpointctl diff with only one argument"""
    assert _usage_exit(lambda: main(["archive", "diff", str(build(tmp_path / "t.tar"))])) == 2
    assert "required" in capsys.readouterr().err


def test_diff_with_non_existing_checkpoint(ctl: Run) -> None:
    """Run checkpointctl diff with non-existing checkpoint"""
    rc, _, err = ctl("diff", "/does-not-exist1.tar", "/does-not-exist2.tar")
    assert rc != 0 and "/does-not-exist1.tar" in err


def test_diff_with_invalid_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Run checkpointctl diff with invalid format"""
    a, b = _pair(tmp_path)
    assert _usage_exit(lambda: main(["archive", "diff", a, b, "--format=invalid"])) == 2
    assert "invalid" in capsys.readouterr().err


def test_diff_two_identical_checkpoints_tree(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl diff with two identical checkpoints (tree format)"""
    rc, out, err = ctl("diff", *_pair(tmp_path))
    assert rc == 0, err
    assert "Checkpoint Diff" in out and "Memory Changes" in out and "Process Tree" in out
    assert out.count("No change") >= 2


def test_diff_two_identical_checkpoints_json(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl diff with two identical checkpoints (json format)"""
    rc, out, err = ctl("diff", *_pair(tmp_path), "--format=json")
    assert rc == 0, err
    assert json.loads(out)["container_id"]


def test_diff_checkpoints_from_different_containers(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl diff with checkpoints from different containers"""
    a = build(tmp_path / "test1.tar", images=TREE)
    b = build(tmp_path / "test2.tar", images=TREE, spec=_spec({"io.container.manager": "different-runtime"}))
    rc, _, err = ctl("diff", str(a), str(b))
    assert rc == 0, err


def test_diff_ps_tree_cmd(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl diff with --ps-tree-cmd flag"""
    rc, out, err = ctl("diff", *_pair(tmp_path, images=MEM), "--ps-tree-cmd")
    assert rc == 0, err
    assert "Process Tree" in out


def test_diff_files(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl diff with --files flag"""
    rc, out, err = ctl("diff", *_pair(tmp_path, images=FILES), "--files")
    assert rc == 0, err
    assert "File Descriptor Changes" in out


CRUN = FIXTURES / "counter-crun.tar.zst"


def test_diff_show_unchanged_process_tree(ctl: Run) -> None:
    """Run checkpointctl diff with --show-unchanged (process tree); two checkpoints of the counter, whose
    sleep child was replaced between them"""
    rc, out, err = ctl("diff", str(CRUN), str(SOURCE), "--show-unchanged")
    assert rc == 0, err
    assert "Process Tree" in out and "= PID" in out and "+ PID" in out and "Removed:" in out


def test_diff_sockets_added_removed_unchanged(ctl: Run) -> None:
    """Run checkpointctl diff with --sockets flag (added, removed, unchanged); the counter has no sockets"""
    rc, out, err = ctl("diff", str(CRUN), str(SOURCE), "--sockets", "--show-unchanged")
    assert rc == 0, err
    assert "Socket Changes" in out and "Sockets:" not in out


def test_diff_sockets_json(ctl: Run) -> None:
    """Run checkpointctl diff with --sockets flag (json format)"""
    rc, out, err = ctl("diff", "--sockets", "--show-unchanged", "--format=json", str(CRUN), str(SOURCE))
    assert rc == 0, err
    d = json.loads(out)
    assert d["socket_changes"] == {} and "file_changes" not in d


def test_diff_files_and_sockets(ctl: Run) -> None:
    """Run checkpointctl diff with --files and --sockets flags"""
    rc, out, err = ctl("diff", str(CRUN), str(SOURCE), "--files", "--sockets")
    assert rc == 0, err
    assert "File Descriptor Changes" in out and "Socket Changes" in out and "Files: +7 -7" in out


def test_diff_json_output_validation(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl diff json output validation"""
    rc, out, err = ctl("diff", *_pair(tmp_path), "--format=json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["container_id"] and d["container_name"] and d["checkpoint_a"] and d["checkpoint_b"]
    assert d["memory_changes"]["size_change_bytes"] == 0 and d["summary"]


def test_diff_compressed_checkpoints(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl diff with compressed checkpoints"""
    rc, out, err = ctl("diff", *_pair(tmp_path, gz=True))
    assert rc == 0, err
    assert "Checkpoint Diff" in out


def test_diff_output_contains_expected_sections(ctl: Run, tmp_path: Path) -> None:
    """Run checkpointctl diff output contains expected sections"""
    rc, out, err = ctl("diff", *_pair(tmp_path))
    assert rc == 0, err
    for section in ("Checkpoint Diff", "Container:", "Image:", "Checkpoint A:", "Checkpoint B:", "Memory Changes"):
        assert section in out
    assert "Process Tree" in out and "Summary" in out
