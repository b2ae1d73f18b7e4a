#!/usr/bin/env python3
"""amber migrate's benchmark: two hosts on one machine (tests/peers/hosts.py: network namespaces,
sshd in B), a container holding N MiB of incompressible memory (bench/workload.c) moved from A
to B, beside the manual way (checkpoint --export, copy, restore --import) in the same run.

    .venv/bin/python bench/migrate.py [--sizes 64,1024,4096] [--runtimes crun,runc] [--modes copy]

Downtime here is the time from the freeze to the container running on B as amber measures it
(migrate's own report; for the manual way, the three steps' sum): the workload's ticker counts
every 100 ms, so it only bounds this from below. Total is the command's wall time. Results go to
bench/results/migrate.json, a table and the ratios to stdout. podman's manual way is not in this
script yet (it needs podman's own roots in the host namespaces): the manual way measured is amber's.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from run import build_rootfs, build_workload, read_counter  # noqa: E402
from tests.conftest import Amber  # noqa: E402
from tests.peers.hosts import Host, namespaces, remote_amber, sshd  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "migrate.json"
IMAGE = "localhost/amber-bench:latest"
MODES = ("copy", "page-server", "lazy")
READY_TIMEOUT = 600.0


def _ready(host: Host, name: str) -> int:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        engine = host.amber.fresh_engine()
        c = engine.containers.store.find(name)
        upper = engine.containers.paths(c.id).upper if c is not None else None
        if upper is not None and (upper / "tmp" / "ready").is_file():
            value = read_counter(upper)
            if value is not None:
                return value
        time.sleep(0.1)
    raise SystemExit(f"the workload {name} on {host.ns} did not get ready")


def _start(host: Host, name: str, runtime: str, mib: int) -> int:
    host.amber_cmd(
        "run", "-d", "--name", name, "--network", "mig", "--runtime", runtime, IMAGE, "workload", str(mib), "random"
    )
    return _ready(host, name)


def _migrate(a: Host, b: Host, mode: str, ssh: list[str]) -> dict[str, Any]:
    started = time.monotonic()
    res = a.amber_cmd(
        "migrate",
        "w",
        f"ssh://root@{b.address}",
        "--mode",
        mode,
        "--remote-amber",
        remote_amber(b),
        *ssh,
        check=False,
        timeout=1800,
    )
    total = time.monotonic() - started
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-2:]}
    frozen = re.search(r"frozen ([0-9.]+) s", res.stderr)
    return {"downtime_s": float(frozen.group(1)) if frozen else None, "total_s": round(total, 3)}


def _manual(a: Host, b: Host, work: Path) -> dict[str, Any]:
    """checkpoint --export (none), copy, restore --import: amber's way without migrate."""
    archive, copy = work / "w.tar", work / "w-copy.tar"
    started = time.monotonic()
    a.amber_cmd("checkpoint", "--export", str(archive), "--compress", "none", "w", timeout=1800)
    shutil.copyfile(archive, copy)
    archive.unlink()
    b.amber_cmd("restore", "--import", str(copy), timeout=1800)
    total = time.monotonic() - started
    copy.unlink()
    a.amber_cmd("rm", "-f", "w")
    return {"downtime_s": round(total, 3), "total_s": round(total, 3)}


def _cell(a: Host, b: Host, runtime: str, mib: int, modes: Sequence[str], ssh: list[str], work: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"runtime": runtime, "mib": mib}
    for mode in modes:
        before = _start(a, "w", runtime, mib)
        row[mode] = _migrate(a, b, mode, ssh)
        if "error" not in row[mode]:
            row[mode]["counted_on"] = _ready(b, "w") >= before
        for host in (a, b):
            host.amber_cmd("rm", "-f", "w", check=False)
    _start(a, "w", runtime, mib)
    row["manual"] = _manual(a, b, work)
    b.amber_cmd("rm", "-f", "w", check=False)
    manual = row["manual"]["downtime_s"]
    for mode in modes:
        took = row[mode].get("downtime_s")
        row[mode]["downtime_vs_manual"] = round(took / manual, 3) if took and manual else None
    return row


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--sizes", default="64,1024,4096", help="MiB of memory, comma-separated")
    p.add_argument("--runtimes", default="crun,runc")
    p.add_argument("--modes", default="copy", help=f"comma-separated, of {', '.join(MODES)}")
    args = p.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="amber-bench-migrate-") as tmp:
        work = Path(tmp)
        rootfs = build_rootfs(work, build_workload(work))
        with namespaces(250) as names:
            hosts = [
                Host(names[r], f"10.250.250.{i}", Amber(work / f"{r}-root", work / f"{r}-run"))
                for r, i in (("a", 1), ("b", 2))
            ]
            try:
                for host in hosts:
                    host.amber.engine.images.import_image(rootfs, IMAGE)
                    host.amber_cmd("network", "create", "--subnet", "10.251.250.0/24", "mig")
                a, b = hosts
                with sshd(b, work / "ssh") as (key, known):
                    ssh = [
                        "--identity",
                        str(key),
                        "-o",
                        f"UserKnownHostsFile={known}",
                        "-o",
                        "StrictHostKeyChecking=yes",
                    ]
                    for runtime in args.runtimes.split(","):
                        for mib in sizes:
                            rows.append(_cell(a, b, runtime, mib, modes, ssh, work))
                            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
            finally:
                for host in hosts:
                    host.cleanup()
    RESULTS.write_text(json.dumps({"rows": rows}, indent=2) + "\n")
    print("| runtime | MiB | mode | downtime s | total s | downtime / manual |")
    print("| --- | --- | --- | --- | --- | --- |")
    for row in rows:
        for mode in [*modes, "manual"]:
            cell = row[mode]
            print(
                f"| {row['runtime']} | {row['mib']} | {mode} | {cell.get('downtime_s')} | "
                f"{cell.get('total_s')} | {cell.get('downtime_vs_manual', '')} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
