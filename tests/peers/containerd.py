"""containerd 2.1 with its own root, state and socket in tmp, its CRI plugin on, driven like a kubelet.

The generated config.toml: cgroupfs, overlayfs, `restrict_oom_score_adj = true` (root lacks
CAP_SYS_RESOURCE here), a ptp CNI network (IPAM state in base) in a private conf dir, netns mounts
under its state dir, NRI off, runtime handlers runc and crun (runc's shim with BinaryName crun), the
sandbox (pause) image and the registry taken from the test's own registry.
`close()` removes the pods, stops containerd and the shims it started, unmounts and deletes its dirs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.peers.cri import Cri, find_proto, have_grpc
from tests.peers.tools import PeerError, have, sh, wait_for

CNI_NET = "amber-peers-lo"


def containerd_version() -> tuple[int, int]:
    if not have("containerd"):
        return (0, 0)
    v = sh(["containerd", "--version"]).stdout.split()[2].lstrip("v")
    major, minor = v.split(".")[:2]
    return int(major), int(minor)


def have_containerd() -> bool:
    """containerd 2.1-2.3 (2.4 dropped the CRI restore path), runc, the CRI proto and grpcio-tools."""
    return (
        (2, 1) <= containerd_version() < (2, 4) and have("runc", "criu", "ctr") and bool(find_proto()) and have_grpc()
    )


def cni_conflist(base: Path) -> dict[str, Any]:
    """A ptp network (a veth per pod, no bridge, no NAT) with its IPAM state under base."""
    ipam = {"type": "host-local", "subnet": "10.231.77.0/24", "dataDir": str(base / "ipam")}
    ptp = {"type": "ptp", "ipMasq": False, "ipam": ipam}
    return {"cniVersion": "1.0.0", "name": CNI_NET, "plugins": [ptp, {"type": "loopback"}]}


def config_toml(base: Path, sandbox_image: str, registry_dir: Path) -> str:
    return f"""version = 3
root = '{base}/root'
state = '{base}/state'
temp = '{base}/tmp'
disabled_plugins = ['io.containerd.nri.v1.nri', 'io.containerd.snapshotter.v1.btrfs',
  'io.containerd.snapshotter.v1.zfs', 'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.blockfile', 'io.containerd.snapshotter.v1.erofs',
  'io.containerd.differ.v1.erofs', 'io.containerd.tracing.processor.v1.otlp']

[grpc]
  address = '{base}/containerd.sock'
[ttrpc]
  address = '{base}/containerd.sock.ttrpc'

[plugins]
  [plugins.'io.containerd.internal.v1.opt']
    path = '{base}/opt'
  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '{sandbox_image}'
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = '{registry_dir}'
  [plugins.'io.containerd.cri.v1.runtime']
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_cdi = false
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          SystemdCgroup = false
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.crun]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.crun.options]
          BinaryName = '/usr/bin/crun'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['/usr/lib/cni', '/opt/cni/bin']
      conf_dir = '{base}/cni'
"""


class Containerd:
    """A private containerd; `cri` is a CRI client on its socket, `ctr(...)` runs ctr against it."""

    def __init__(self, base: Path, *, registry_host: str, sandbox_image: str, cache: Path) -> None:
        self.base = base
        self.sock = base / "containerd.sock"
        for d in ("root", "state", "tmp", "opt", "cni", "logs"):
            (base / d).mkdir(parents=True, exist_ok=True)
        (base / "cni" / "10-peers.conflist").write_text(json.dumps(cni_conflist(base)))
        hosts = base / "certs.d" / registry_host
        hosts.mkdir(parents=True)
        (hosts / "hosts.toml").write_text(
            f'server = "http://{registry_host}"\n\n[host."http://{registry_host}"]\n'
            '  capabilities = ["pull", "resolve"]\n  skip_verify = true\n'
        )
        conf = base / "config.toml"
        conf.write_text(config_toml(base, sandbox_image, base / "certs.d"))
        self.log_path = base / "containerd.log"
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            ["containerd", "--config", str(conf), "--log-level", "info"], stdout=self.log, stderr=subprocess.STDOUT
        )
        self.cri: Cri | None = None
        try:
            wait_for("containerd's socket", self._up, timeout=30)
            self.cri = Cri(self.sock, cache)
            wait_for("containerd's CRI", self._cri_up, timeout=30)
        except BaseException:
            self.close()
            raise

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise PeerError(f"containerd exited {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
        return self.sock.exists()

    def _cri_up(self) -> bool:
        assert self.cri is not None
        try:
            self.cri.version()
        except Exception:  # noqa: BLE001 - grpc's errors while the plugin starts
            return False
        return True

    @property
    def api(self) -> Cri:
        assert self.cri is not None, "containerd is not running"
        return self.cri

    def ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return sh(["ctr", "-a", str(self.sock), "-n", "k8s.io", *args])

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text()[-n:]

    def _shims(self) -> list[int]:
        pids = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                with contextlib.suppress(OSError):
                    if str(self.sock).encode() in (d / "cmdline").read_bytes() and int(d.name) != self.proc.pid:
                        pids.append(int(d.name))
        return pids

    def _remove_pods(self) -> None:
        if self.cri is None:
            return
        pb = self.cri.pb
        with contextlib.suppress(Exception):
            for pod in self.cri.rt.ListPodSandbox(pb.ListPodSandboxRequest(), timeout=10).items:
                with contextlib.suppress(Exception):
                    self.cri.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod.id), timeout=30)
                with contextlib.suppress(Exception):
                    self.cri.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod.id), timeout=30)

    def close(self) -> None:
        """Remove the pods, stop containerd and its shims, unmount and delete everything under base."""
        self._remove_pods()
        if self.cri is not None:
            self.cri.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self._shims():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        self.log.close()
        for line in reversed(Path("/proc/mounts").read_text().splitlines()):
            target = line.split()[1]
            if target.startswith(str(self.base)):
                subprocess.run(["umount", "-l", target], check=False, capture_output=True)
        for leftover in Path("/var/lib/cni/results").glob(f"{CNI_NET}-*"):
            leftover.unlink(missing_ok=True)
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.base)], check=False)

    def __enter__(self) -> Containerd:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    # -------- kubelet-like calls --------
    def run_pod(self, name: str, *, share_pid: bool = False, runtime: str = "runc") -> str:
        """RunPodSandbox with the runtime handler `runtime` (runc, or crun: runc's shim driving crun)."""
        pb = self.api.pb
        ns = pb.NamespaceOption(pid=pb.POD if share_pid else pb.CONTAINER)
        req = pb.RunPodSandboxRequest(config=self.pod_config(name, ns), runtime_handler=runtime)
        return str(self.api.rt.RunPodSandbox(req, timeout=120).pod_sandbox_id)

    def pod_config(self, name: str, ns: Any) -> Any:
        pb = self.api.pb
        (self.base / "logs" / name).mkdir(exist_ok=True)
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{name}", namespace="default", attempt=0),
            hostname=name,
            log_directory=str(self.base / "logs" / name),
            linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(namespace_options=ns)),
        )

    def create(self, pod_id: str, pod_name: str, name: str, image: str, command: list[str], *,
               share_pid: bool = False) -> str:  # fmt: skip
        """CreateContainer; `image` may be a checkpoint archive's path (containerd then restores it)."""
        pb = self.api.pb
        ns = pb.NamespaceOption(pid=pb.POD if share_pid else pb.CONTAINER)
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=0),
            image=pb.ImageSpec(image=image),
            command=command,
            log_path=f"{name}.log",
            linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(namespace_options=ns)),
        )
        req = pb.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=config, sandbox_config=self.pod_config(pod_name, ns)
        )
        return str(self.api.rt.CreateContainer(req, timeout=120).container_id)

    def start(self, cid: str) -> None:
        self.api.rt.StartContainer(self.api.pb.StartContainerRequest(container_id=cid), timeout=120)

    def pull(self, image: str) -> str:
        pb = self.api.pb
        return str(self.api.img.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=image)), timeout=120).image_ref)

    def checkpoint(self, cid: str, location: Path) -> None:
        req = self.api.pb.CheckpointContainerRequest(container_id=cid, location=str(location), timeout=120)
        self.api.rt.CheckpointContainer(req, timeout=180)

    def exec_sync(self, cid: str, cmd: list[str]) -> tuple[int, str]:
        r = self.api.rt.ExecSync(self.api.pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=10), timeout=20)
        return int(r.exit_code), r.stdout.decode()

    def state(self, cid: str) -> int:
        status = self.api.rt.ContainerStatus(self.api.pb.ContainerStatusRequest(container_id=cid), timeout=20).status
        return int(status.state)
