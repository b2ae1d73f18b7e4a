"""podman's --ipc modes: what is accepted, how a join is written, what checkpoint refuses."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from amber.engine import ipc_share
from amber.errors import ConflictError, UsageError
from amber.models import Container, Status
from tests.unit.engine.test_interop_fields import _container as a_container


def _container(cid: str, status: Status = Status.RUNNING, pid: int = 42) -> Container:
    return a_container(id=cid * 64, name=f"c{cid}", status=status, pid=pid)


def _spec(mode: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"annotations": {}, "linux": {"namespaces": [{"type": "pid"}, {"type": "ipc"}]}}
    if mode:
        spec["annotations"][ipc_share.ANNOTATION] = mode
    return spec


def test_modes() -> None:
    for ok in ("private", "shareable", "container:web"):
        ipc_share.validate(ok)
    for bad in ("host", "container:", "none", ""):
        with pytest.raises(UsageError):
            ipc_share.validate(bad)
    assert ipc_share.joined_ref("container:web") == "web" and ipc_share.joined_ref("shareable") is None


def test_a_join_needs_a_running_shareable_container_and_is_written_into_the_spec() -> None:
    owner = _container("1")
    assert ipc_share.ns_path(owner, _spec("shareable"), joiner="g") == "/proc/42/ns/ipc"
    with pytest.raises(ConflictError, match="not shareable"):
        ipc_share.ns_path(owner, _spec(), joiner="g")
    with pytest.raises(ConflictError, match="not running"):
        ipc_share.ns_path(dataclasses.replace(owner, status=Status.EXITED), _spec("shareable"), joiner="g")
    spec = _spec()
    ipc_share.set_join(spec, owner.id, "/proc/42/ns/ipc")
    assert spec["linux"]["namespaces"][1] == {"type": "ipc", "path": "/proc/42/ns/ipc"}
    assert spec["annotations"][ipc_share.ANNOTATION] == "container:" + owner.id


def test_checkpoint_refuses_what_criu_would_split(tmp_path: Path) -> None:
    owner, guest, other = _container("1"), _container("2"), _container("3")
    specs = {owner.id: _spec("shareable"), guest.id: _spec("container:" + owner.id), other.id: _spec()}
    for cid, spec in specs.items():
        (tmp_path / cid).write_text(json.dumps(spec))
    state = {c.id: c for c in (owner, guest, other)}

    def spec_of(c: Container) -> Path:
        return tmp_path / c.id

    def check(c: Container) -> None:
        ipc_share.check_checkpoint(c, spec_of, list(state.values()), lambda o: state[o.id])

    with pytest.raises(ConflictError, match="shares the IPC namespace of another"):
        check(guest)
    with pytest.raises(ConflictError, match="c2"):
        check(owner)
    check(other)
    state[guest.id] = dataclasses.replace(guest, status=Status.EXITED)
    check(owner)  # nobody running shares it now
