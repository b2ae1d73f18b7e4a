"""A CRI client (runtime.v1, what the kubelet calls), generated from Debian's api.proto with grpcio-tools.

The proto comes with golang-github-kubernetes-cri-api-dev (scripts/setup-peers.sh); its gogoproto
options only matter to Go, so they are dropped from a copy before generating. The generated modules
are cached under the directory the caller gives (one per test session).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

PROTO_CANDIDATES = (
    "/usr/share/gocode/src/k8s.io/cri-api/pkg/apis/runtime/v1/api.proto",
    "/usr/share/gocode/src/github.com/kubernetes/cri-api/pkg/apis/runtime/v1/api.proto",
)


def find_proto() -> Path | None:
    """The CRI api.proto: $AMBER_CRI_PROTO, else where Debian's package puts it; None when missing."""
    for candidate in (os.environ.get("AMBER_CRI_PROTO", ""), *PROTO_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def have_grpc() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("grpc", "grpc_tools"))


def generate(cache: Path) -> tuple[ModuleType, ModuleType]:
    """(api_pb2, api_pb2_grpc) generated into `cache`; raises RuntimeError if protoc fails."""
    protoc: Any = importlib.import_module("grpc_tools.protoc")

    proto = find_proto()
    if proto is None:
        raise RuntimeError("no CRI api.proto found: run scripts/setup-peers.sh or set AMBER_CRI_PROTO")
    cache.mkdir(parents=True, exist_ok=True)
    if not (cache / "api_pb2_grpc.py").exists():
        text = proto.read_text()
        text = re.sub(r'^import "github.com/gogo/.*";$', "", text, flags=re.M)
        text = re.sub(r"^option \(gogoproto\.[^;]*;$", "", text, flags=re.M)
        text = re.sub(r"\s*\[\(gogoproto\.[^\]]*\]", "", text)
        (cache / "api.proto").write_text(text)
        include = Path(protoc.__file__).parent / "_proto"
        argv = ["protoc", f"-I{cache}", f"-I{include}", f"--python_out={cache}", f"--grpc_python_out={cache}"]
        if protoc.main([*argv, str(cache / "api.proto")]) != 0:
            raise RuntimeError(f"grpc_tools.protoc failed on {proto}")
    if str(cache) not in sys.path:
        sys.path.insert(0, str(cache))
    return importlib.import_module("api_pb2"), importlib.import_module("api_pb2_grpc")


class Cri:
    """The CRI runtime and image services on a unix socket: `cri.rt.RunPodSandbox(pb.Request(...))`."""

    def __init__(self, socket: Path, cache: Path) -> None:
        grpc: Any = importlib.import_module("grpc")
        self.pb, grpc_mod = generate(cache)
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.rt: Any = grpc_mod.RuntimeServiceStub(self.channel)
        self.img: Any = grpc_mod.ImageServiceStub(self.channel)

    def version(self) -> str:
        return str(self.rt.Version(self.pb.VersionRequest(), timeout=5).runtime_version)

    def close(self) -> None:
        self.channel.close()
