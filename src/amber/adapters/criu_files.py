"""Open files and sockets of a checkpoint's tasks, from CRIU's fdinfo, files and socket images.

Decoded with pycriu through criu_images.ImageDir (the one decode policy lives there).
"""

from __future__ import annotations

import ipaddress
import quopri
import struct
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from amber.adapters.criu_images import ImageDir, Process, int_field

# Linux TCP states (include/net/tcp_states.h); CRIU records the kernel's numbers.
TCP_STATES = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
}
FAMILIES = {1: "UNIX", 2: "IPV4", 10: "IPV6", 16: "NETLINK", 17: "PACKET"}
SOCK_TYPES = {1: "STREAM", 2: "DGRAM", 3: "RAW", 4: "RDM", 5: "SEQPACKET", 10: "PACKET"}
PROTOCOLS = {0: "", 1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 58: "ICMPV6", 136: "UDPLITE", 255: "RAW"}
SOCKET_FD_TYPES = ("UNIXSK", "INETSK", "PACKETSK", "NETLINKSK")


@dataclass(frozen=True)
class FileDescriptor:
    pid: int
    fd: str  # "0", "1"... or "cwd", "root"
    type: str  # REG, PIPE, UNIXSK, INETSK... ("" for cwd and root)
    path: str

    @property
    def label(self) -> str:
        return f"{self.type} {self.fd}".strip()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Socket:
    pid: int
    fd: int
    kind: str  # the fd type: UNIXSK, INETSK, PACKETSK, NETLINKSK
    family: str = ""  # IPV4, IPV6, UNIX...
    protocol: str = ""  # TCP, UDP...
    type: str = ""  # STREAM, DGRAM...
    state: str = ""  # ESTABLISHED, LISTEN... (TCP numbering, as the kernel reports it)
    src: str = ""  # address, or the unix socket's name ("@..." for abstract ones)
    src_port: int = 0
    dst: str = ""
    dst_port: int = 0
    send_buf: int = 0
    recv_buf: int = 0
    ino: int = 0
    peer: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _files_by_id(d: ImageDir) -> dict[int, dict[str, Any]]:
    return {int_field(e, "id"): e for e in d.load("files.img", required=False) or []}


def _fdinfo(d: ImageDir, pid: int) -> list[dict[str, Any]]:
    ids = d.first(f"ids-{pid}.img", required=False)
    if ids is None:
        return []
    return d.load(f"fdinfo-{int_field(ids, 'files_id')}.img", required=False) or []


def _unix_name(raw: Any) -> str:
    if isinstance(raw, str):
        raw = raw.encode()
    if not isinstance(raw, bytes):
        return ""
    name = quopri.decodestring(raw)
    if name.startswith(b"\0"):
        name = b"@" + name[1:]
    return name.decode(errors="replace")


def _file_path(files: dict[int, dict[str, Any]], fid: int, ftype: str) -> str:
    """How checkpointctl names an open file: its path, pipe[ino], unix[ino (peer) name], TYPE.id."""
    entry = files.get(fid) or {}
    if ftype == "REG":
        reg = entry.get("reg")
        return str(reg.get("name", "unknown")) if isinstance(reg, dict) else "unknown"
    if ftype == "PIPE":
        pipe = entry.get("pipe")
        return f"pipe[{int_field(pipe, 'pipe_id')}]" if isinstance(pipe, dict) else "pipe[?]"
    if ftype == "UNIXSK":
        usk = entry.get("usk")
        if not isinstance(usk, dict):
            return "unix[?]"
        return f"unix[{int_field(usk, 'ino')} ({int_field(usk, 'peer')}) {_unix_name(usk.get('name'))}]"
    return f"{ftype}.{fid}"


def read_files(d: ImageDir, processes: Iterable[Process]) -> list[FileDescriptor]:
    """Open files of each live process (fdinfo via ids' files_id), then its cwd and root (fs-<pid>)."""
    files = _files_by_id(d)
    out: list[FileDescriptor] = []
    for p in processes:
        if not p.alive_or_stopped:
            continue
        for fdi in _fdinfo(d, p.pid):
            ftype = str(fdi.get("type", ""))
            out.append(
                FileDescriptor(p.pid, str(int_field(fdi, "fd")), ftype, _file_path(files, int_field(fdi, "id"), ftype))
            )
        fs = d.first(f"fs-{p.pid}.img", required=False)
        if fs is not None:
            out.append(FileDescriptor(p.pid, "cwd", "", _file_path(files, int_field(fs, "cwd_id"), "REG")))
            out.append(FileDescriptor(p.pid, "root", "", _file_path(files, int_field(fs, "root_id"), "REG")))
    return out


def _ip(parts: Any, family: int) -> str:
    if not isinstance(parts, list) or not parts:
        return ""
    try:
        raw = b"".join(struct.pack("<I", int(x) & 0xFFFFFFFF) for x in parts)
        if family == 10 or len(parts) == 4:
            return str(ipaddress.IPv6Address(raw[:16]))
        return str(ipaddress.IPv4Address(raw[:4]))
    except (ValueError, struct.error):
        return ""


def _socket(pid: int, fd: int, kind: str, entry: dict[str, Any]) -> Socket | None:
    key = {"INETSK": "isk", "UNIXSK": "usk", "PACKETSK": "psk", "NETLINKSK": "nlsk"}[kind]
    sk = entry.get(key)
    if not isinstance(sk, dict):
        return Socket(pid, fd, kind)
    opts = sk.get("opts")
    opts = opts if isinstance(opts, dict) else {}
    send, recv = int_field(opts, "so_sndbuf"), int_field(opts, "so_rcvbuf")
    if kind == "INETSK":
        family = int_field(sk, "family")
        proto = int_field(sk, "proto")
        return Socket(
            pid,
            fd,
            kind,
            family=FAMILIES.get(family, str(family)),
            protocol=PROTOCOLS.get(proto, str(proto)),
            type=SOCK_TYPES.get(int_field(sk, "type"), ""),
            state=TCP_STATES.get(int_field(sk, "state"), ""),
            src=_ip(sk.get("src_addr"), family),
            src_port=int_field(sk, "src_port"),
            dst=_ip(sk.get("dst_addr"), family),
            dst_port=int_field(sk, "dst_port"),
            ino=int_field(sk, "ino"),
            send_buf=send,
            recv_buf=recv,
        )
    if kind == "UNIXSK":
        return Socket(
            pid,
            fd,
            kind,
            family="UNIX",
            type=SOCK_TYPES.get(int_field(sk, "type"), ""),
            state=TCP_STATES.get(int_field(sk, "state"), ""),
            src=_unix_name(sk.get("name")),
            ino=int_field(sk, "ino"),
            peer=int_field(sk, "peer"),
            send_buf=send,
            recv_buf=recv,
        )
    proto = int_field(sk, "protocol")
    return Socket(
        pid,
        fd,
        kind,
        family="PACKET" if kind == "PACKETSK" else "NETLINK",
        protocol=PROTOCOLS.get(proto, str(proto)),
        type=SOCK_TYPES.get(int_field(sk, "type"), ""),
        state=TCP_STATES.get(int_field(sk, "state"), ""),
        ino=int_field(sk, "ino"),
        send_buf=send,
        recv_buf=recv,
    )


def read_sockets(d: ImageDir, processes: Iterable[Process]) -> list[Socket]:
    """The sockets each live process has open (unix, inet, packet, netlink)."""
    files = _files_by_id(d)
    out: list[Socket] = []
    for p in processes:
        if not p.alive_or_stopped:
            continue
        for fdi in _fdinfo(d, p.pid):
            kind = str(fdi.get("type", ""))
            if kind in SOCKET_FD_TYPES:
                sk = _socket(p.pid, int_field(fdi, "fd"), kind, files.get(int_field(fdi, "id")) or {})
                if sk is not None:
                    out.append(sk)
    return out


__all__ = ["FAMILIES", "TCP_STATES", "FileDescriptor", "Socket", "read_files", "read_sockets"]
