"""skopeo's argv and the errors amber makes of its failures; registry references."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from amber.adapters import skopeo
from amber.adapters.run import Result
from amber.engine.checkpoint_images import remote_ref
from amber.errors import AmberError, CommandError, NotFoundError, UsageError


class FakeRun:
    def __init__(self, stderr: str = "", returncode: int = 0, stdout: str = "{}") -> None:
        self.calls: list[list[str]] = []
        self.stderr, self.returncode, self.stdout = stderr, returncode, stdout

    def __call__(self, argv: Sequence[Any], **kwargs: Any) -> Result:
        args = [str(a) for a in argv]
        self.calls.append(args)
        assert kwargs.get("timeout")
        if self.returncode:
            raise CommandError(args, self.returncode, "", self.stderr)
        return Result(args, 0, self.stdout, "")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeRun:
    f = FakeRun()
    monkeypatch.setattr(skopeo, "run", f)
    monkeypatch.setattr(skopeo, "find_tool", lambda name, reason: f"/usr/bin/{name}")
    return f


def test_copy_argv(fake: FakeRun) -> None:
    skopeo.copy(skopeo.oci_ref(Path("/tmp/x"), "t"), skopeo.docker_ref("127.0.0.1:5000/a:1"), tls_verify=False)
    argv = fake.calls[-1]
    assert argv[0] == "/usr/bin/skopeo" and "copy" in argv
    assert "--dest-tls-verify=false" in argv and not any(a.startswith("--src-tls") for a in argv)
    assert argv[-2:] == ["oci:/tmp/x:t", "docker://127.0.0.1:5000/a:1"]
    skopeo.copy("docker://h:1/a:1", "oci:/d:t")
    assert "--src-tls-verify=true" in fake.calls[-1]
    assert skopeo.inspect("docker://h:1/a:1", tls_verify=False) == {}
    assert "--tls-verify=false" in fake.calls[-1]


@pytest.mark.parametrize(
    ("stderr", "cls", "message", "hint"),
    [
        ("http: server gave HTTP response to HTTPS client", AmberError, "speaks plain HTTP", "--tls-verify=false"),
        ("dial tcp 127.0.0.1:5999: connect: connection refused", AmberError, "cannot connect", "registry running"),
        ("reading manifest 1 in h:1/a: manifest unknown", NotFoundError, "has no such image", "list-tags"),
        ("x509: certificate signed by unknown authority", AmberError, "not trusted", "CA certificate"),
        ("unauthorized: authentication required", AmberError, "refused access", "skopeo login h:1"),
        ("something else", AmberError, "skopeo failed", "--debug"),
    ],
)
def test_errors_name_image_and_registry(
    monkeypatch: pytest.MonkeyPatch, fake: FakeRun, stderr: str, cls: type[AmberError], message: str, hint: str
) -> None:
    fake.returncode, fake.stderr = 1, stderr
    with pytest.raises(cls) as info:
        skopeo.copy("docker://h:1/a:1", "oci:/d:t")
    err = info.value
    assert type(err) is cls
    assert err.message.startswith("pulling h:1/a:1: ") and message in err.message and "h:1" in err.message
    assert err.hint is not None and hint in err.hint
    assert any("command:" in d for d in err.details)


def test_push_error_says_pushing(fake: FakeRun) -> None:
    fake.returncode, fake.stderr = 1, "connection refused"
    with pytest.raises(AmberError, match="^pushing 127.0.0.1:5000/a:1: cannot connect to registry 127.0.0.1:5000"):
        skopeo.copy("oci:/d:t", "docker://127.0.0.1:5000/a:1")


def test_registry_of_and_remote_ref() -> None:
    assert skopeo.registry_of("docker://127.0.0.1:5000/a/b:1") == "127.0.0.1:5000"
    assert skopeo.registry_of("busybox") == "docker.io"
    assert remote_ref("127.0.0.1:5000/cnt") == "127.0.0.1:5000/cnt:latest"
    assert remote_ref("docker://127.0.0.1:5000/cnt:1") == "127.0.0.1:5000/cnt:1"
    assert remote_ref("busybox") == "docker.io/library/busybox:latest"
    assert remote_ref("me/app:2") == "docker.io/me/app:2"
    assert remote_ref("localhost/app") == "localhost/app:latest"
    digest = "sha256:" + "a" * 64
    assert remote_ref(f"h:1/app@{digest}") == f"h:1/app@{digest}"
    with pytest.raises(UsageError):
        remote_ref("docker://")


def test_push_pull_command_lines() -> None:
    import argparse

    from amber.cli import ckpt_image_cmds

    parser = argparse.ArgumentParser()
    ckpt_image_cmds.register(parser.add_subparsers())
    args = parser.parse_args(["push", "cnt", "127.0.0.1:5000/cnt:1", "--tls-verify=false"])
    assert (args.name, args.dest, args.tls_verify, args.handler) == (
        "cnt",
        "127.0.0.1:5000/cnt:1",
        False,
        ckpt_image_cmds.cmd_push,
    )
    assert parser.parse_args(["pull", "h:1/a"]).tls_verify is True
    assert parser.parse_args(["pull", "--tls-verify=true", "h:1/a"]).tls_verify is True
    with pytest.raises(SystemExit):
        parser.parse_args(["pull", "--tls-verify=maybe", "h:1/a"])
