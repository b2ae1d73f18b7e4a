"""docker-registry (distribution 2.8) on 127.0.0.1:<free port>, its storage in tmp; images pushed with skopeo."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from types import TracebackType

from tests.peers.oci import OciImage
from tests.peers.tools import PeerError, free_port, have, sh, wait_for

REGISTRY = "/usr/bin/docker-registry"


def have_registry() -> bool:
    return have(REGISTRY, "skopeo")


class Registry:
    """A private registry; `push(image, "demo:latest")` returns the pushed NAME and manifest digest."""

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        conf = base / "config.yml"
        conf.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {base / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n"
        )
        self.log = (base / "registry.log").open("w")
        self.proc = subprocess.Popen([REGISTRY, "serve", str(conf)], stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(f"registry on {self.host}", self._up)

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise PeerError(
                f"docker-registry exited {self.proc.returncode}: {(self.base / 'registry.log').read_text()}"
            )
        try:
            with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1):  # noqa: S310
                return True
        except OSError:
            return False

    def push(self, image: OciImage, repo_tag: str) -> tuple[str, str]:
        """Copy the oci-archive to HOST/repo_tag; returns (name, manifest digest as the registry serves it)."""
        name = f"{self.host}/{repo_tag}"
        sh(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci-archive:{image.path}", f"docker://{name}"])
        out = sh(["skopeo", "inspect", "--tls-verify=false", f"docker://{name}"]).stdout
        return name, str(json.loads(out)["Digest"])

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
