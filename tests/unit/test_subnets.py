"""tests/subnets.py: the tests' subnets are never one a live session holds or the host routes."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path

import pytest

from amber.engine import net_alloc
from tests import subnets


@pytest.fixture
def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The reservations in tmp_path, over a pool of four /24s, with 10.89.129.0/24 routed."""
    monkeypatch.setattr(subnets, "HELD", tmp_path / "held")
    monkeypatch.setattr(subnets, "LOCK", tmp_path / "lock")
    monkeypatch.setattr(subnets, "POOL", [ipaddress.IPv4Network(f"10.89.{i}.0/24") for i in range(128, 132)])
    monkeypatch.setattr(subnets, "_mine", [])
    routed = [ipaddress.IPv4Network("10.89.129.0/24")]
    monkeypatch.setattr(net_alloc, "host_routes", lambda: routed)
    return tmp_path / "held"


def test_reserve_skips_held_and_routed_subnets_and_takes_back_a_dead_sessions(pool: Path) -> None:
    pool.mkdir()
    dead = subprocess.Popen(["true"])  # a pid whose process has ended (and been reaped)
    assert dead.wait(timeout=30) == 0
    (pool / "10.89.128.0").write_text(f"{os.getppid()}\n")  # a live process holds it
    (pool / "10.89.130.0").write_text(f"{dead.pid}\n")  # its process has ended: free again
    assert subnets.reserve() == "10.89.130.0/24"
    assert (pool / "10.89.130.0").read_text() == f"{os.getpid()}\n"
    assert subnets.reserve() == "10.89.131.0/24"
    with pytest.raises(AssertionError, match="is held or routed"):
        subnets.reserve()


def test_release_removes_only_this_process_s_own(pool: Path) -> None:
    mine = subnets.reserve()
    other = pool / "10.89.130.0"
    other.write_text(f"{os.getppid()}\n")
    subnets._release()
    assert not (pool / str(ipaddress.IPv4Network(mine).network_address)).exists()
    assert other.exists()
