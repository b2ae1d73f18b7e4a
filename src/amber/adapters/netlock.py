"""What keeps established TCP connections alive across a checkpoint and a restore with
networking on: CRIU's network lock in the new namespace, and the host's conntrack entries.

- CRIU does not lock a namespace it did not make (amber makes the container's), so packets that
  arrive after the IP is up but before the sockets exist get a reset. `lock` installs CRIU's own
  lock chain (iptables, CRIU's rules: what carries CRIU's mark 0xC114 passes, the rest drops)
  in the namespace before the runtime restores into it; `unlock` removes it afterwards.
- A restored socket sends a window probe at once. On a NAT'd bridge a host without the
  connection's conntrack entry masquerades it and the peer answers with a reset. `entries`
  records the entries of the container's address at checkpoint, `insert` puts them back (with
  their NAT binding) before the restore.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from amber.adapters.run import find_tool, run
from amber.errors import CommandError

SOCCR_MARK = "0xC114"
LOCK = f"*filter\n:CRIU - [0:0]\n-I INPUT -j CRIU\n-I OUTPUT -j CRIU\n-A CRIU -m mark --mark {SOCCR_MARK} -j ACCEPT\n-A CRIU -j DROP\nCOMMIT\n"  # noqa: E501 - CRIU's text
UNLOCK = "*filter\n:CRIU - [0:0]\n-D INPUT -j CRIU\n-D OUTPUT -j CRIU\n-X CRIU\nCOMMIT\n"
TIMEOUT = 30.0
_FIELD = re.compile(r"(\w+)=(\S+)")


def _in_netns(netns: Path, argv: Sequence[str]) -> list[str]:
    return [find_tool("nsenter", "enter network namespaces"), f"--net={netns}", *argv]


def lock(netns: Path) -> None:
    """Install CRIU's network lock in namespace `netns` (IPv4 and IPv6).

    Raises PreconditionError (iptables-restore missing), CommandError (it failed)."""
    for tool in ("iptables-restore", "ip6tables-restore"):
        run(
            _in_netns(netns, [find_tool(tool, "lock the network of a restored container"), "-w", "--noflush"]),
            input=LOCK.encode(),
            timeout=TIMEOUT,
            what=f"could not lock the network namespace {netns} for the restore",
        )


def unlock(netns: Path) -> None:
    """Remove the lock `lock` installed, if CRIU has not already; never raises for a missing one."""
    for tool in ("iptables-restore", "ip6tables-restore"):
        with contextlib.suppress(CommandError):
            argv = _in_netns(netns, [find_tool(tool, "unlock"), "-w", "--noflush"])
            run(argv, input=UNLOCK.encode(), check=False, timeout=TIMEOUT)


@dataclass(frozen=True)
class Entry:
    """One TCP conntrack entry: the original tuple and the reply tuple."""

    src: str
    dst: str
    sport: int
    dport: int
    reply_src: str
    reply_dst: str
    reply_sport: int
    reply_dport: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Entry:
        """Raises KeyError, TypeError, ValueError on a malformed record."""
        return cls(
            str(d["src"]),
            str(d["dst"]),
            int(d["sport"]),
            int(d["dport"]),
            str(d["reply_src"]),
            str(d["reply_dst"]),
            int(d["reply_sport"]),
            int(d["reply_dport"]),
        )

    def involves(self, ips: Iterable[str]) -> bool:
        """Does the entry reach one of `ips` (only a container's own connections go back)?"""
        return bool({self.src, self.dst, self.reply_src, self.reply_dst} & set(ips))

    def insert_args(self) -> list[str]:
        """conntrack -I's arguments: the original tuple, its inverse as the reply, and the NAT
        binding when the reply comes from elsewhere (a published port: --dst-nat)."""
        args = ["-p", "tcp", "-s", self.src, "-d", self.dst, "--sport", str(self.sport), "--dport", str(self.dport)]
        args += ["--state", "ESTABLISHED", "-u", "ASSURED,SEEN_REPLY", "-t", "432000"]
        if (self.reply_src, self.reply_sport) != (self.dst, self.dport):
            args += ["--dst-nat", f"{self.reply_src}:{self.reply_sport}"]
        if (self.reply_dst, self.reply_dport) != (self.src, self.sport):
            args += ["--src-nat", f"{self.reply_dst}:{self.reply_dport}"]
        return args


def parse(text: str) -> list[Entry]:
    """Entries of `conntrack -L` output (established TCP ones; others are left out)."""
    out = []
    for line in text.splitlines():
        if not line.startswith("tcp") or "ESTABLISHED" not in line:
            continue
        fields = _FIELD.findall(line)
        tuples = [v for k, v in fields if k in ("src", "dst", "sport", "dport")]
        if len(tuples) < 8:
            continue
        with contextlib.suppress(ValueError):
            s, d, sp, dp, rs, rd, rsp, rdp = tuples[:8]
            out.append(Entry(s, d, int(sp), int(dp), rs, rd, int(rsp), int(rdp)))
    return out


def entries(ip: str) -> list[Entry]:
    """The host's established TCP conntrack entries that involve address `ip` in either tuple.

    Raises PreconditionError when conntrack is not installed."""
    tool = find_tool("conntrack", "keep a container's TCP connections across a restore")
    found: dict[Entry, None] = {}
    for flag in ("-s", "-d", "-r", "-q"):
        res = run([tool, "-L", "-p", "tcp", flag, ip], check=False, timeout=TIMEOUT)
        found.update(dict.fromkeys(parse(res.stdout)))
    return list(found)


def insert(items: Iterable[Entry]) -> None:
    """Put entries back into the host's table (an entry that exists already is left as it is).

    Raises PreconditionError when conntrack is not installed."""
    items = list(items)
    if not items:
        return
    tool = find_tool("conntrack", "keep a container's TCP connections across a restore")
    for entry in items:
        run([tool, "-I", *entry.insert_args()], check=False, timeout=TIMEOUT)


__all__ = ["Entry", "entries", "insert", "lock", "parse", "unlock"]
