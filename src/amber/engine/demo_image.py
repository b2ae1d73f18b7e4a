"""A tiny image made from the host's static busybox, for the demo, tests and benchmarks."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

from amber.errors import PreconditionError

APPLETS = (
    "sh",
    "cat",
    "echo",
    "sleep",
    "ls",
    "ps",
    "env",
    "head",
    "tail",
    "wc",
    "grep",
    "kill",
    "httpd",
    "nc",
    "wget",
    "nslookup",
    "dd",
    "cp",
    "mv",
    "rm",
    "mkdir",
    "touch",
    "true",
    "false",
    "seq",
    "sed",
    "od",
    "stat",
)
STATIC_BUSYBOX = ("/bin/busybox", "/usr/bin/busybox")


def find_static_busybox() -> Path:
    for candidate in STATIC_BUSYBOX:
        path = Path(candidate)
        if path.is_file():
            with path.open("rb") as f:
                head = f.read(4096 * 4)
            if b"ld-linux" not in head and b"/lib64/ld" not in head:
                return path
    raise PreconditionError(
        "no static busybox found on this host (needed to build the demo image)",
        hint="install it: apt-get install busybox-static (make setup does)",
    )


def _add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    tar.addfile(info)


def build_rootfs_tar(dest: Path) -> Path:
    """Write a rootfs tarball holding a static busybox and its applet links to `dest`."""
    busybox = find_static_busybox()
    tmp = dest.with_name(dest.name + ".tmp")
    with tarfile.open(tmp, "w") as tar:
        for d in ("bin", "etc", "tmp", "proc", "sys", "dev", "root", "var", "var/www", "run"):
            _add_dir(tar, d, 0o1777 if d == "tmp" else 0o755)
        info = tar.gettarinfo(str(busybox), arcname="bin/busybox")
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        with busybox.open("rb") as f:
            tar.addfile(info, f)
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        _add_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
        _add_file(tar, "etc/group", b"root:x:0:\n")
        _add_file(tar, "etc/motd", b"hello from amber\n")
        _add_file(tar, "var/www/index.html", b"<h1>amber</h1>\n")
    os.replace(tmp, dest)
    return dest


def cleanup(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
