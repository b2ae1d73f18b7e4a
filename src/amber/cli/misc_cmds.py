"""`amber demo` (the README's first command ends here) and `amber info` (host diagnostics)."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from amber.adapters import criu, runtime
from amber.adapters.checkpoint_archive import read_head
from amber.cli.output import human_size
from amber.engine.checkpoint import CheckpointOptions, RestoreOptions
from amber.engine.demo_image import build_rootfs_tar
from amber.errors import AmberError, ExitCode

if TYPE_CHECKING:
    from amber.engine import Engine

DEMO_IMAGE = "localhost/amber-demo:latest"
DEMO_NAME = "amber-demo"
COUNTER = "i=0; while :; do i=$((i+1)); echo $i > /tmp/counter; echo tick $i; sleep 0.2; done"


def _say(text: str) -> None:
    print(f"\n--> {text}", flush=True)


def _counter(engine: Engine, name: str) -> int:
    c = engine.containers.store.get(name)
    text = (engine.containers.paths(c.id).upper / "tmp" / "counter").read_text().strip()
    return int(text or "0")


def cmd_demo(args: argparse.Namespace, engine: Engine) -> int:
    runtime_name = args.runtime or args.global_runtime or engine.settings.default_runtime
    with tempfile.TemporaryDirectory(prefix="amber-demo-") as tmp:
        _say("Building a small image from the host's static busybox")
        tar = build_rootfs_tar(Path(tmp) / "rootfs.tar")
        image = engine.images.import_image(tar, DEMO_IMAGE)
        print(f"    image {image.name} ({image.id[:12]})")
        old = engine.containers.store.find(DEMO_NAME)
        if old is not None:
            engine.containers.remove(old.id, force=True)
        _say(f"Running a container that counts into /tmp/counter, under {runtime_name}")
        print(f"    amber run -d --name {DEMO_NAME} --runtime {runtime_name} {DEMO_IMAGE} sh -c '{COUNTER}'")
        c = engine.containers.run(DEMO_IMAGE, ["sh", "-c", COUNTER], name=DEMO_NAME, runtime_name=runtime_name)
        time.sleep(1.5)
        print(f"    {c.name} is {engine.containers.inspect_record(c.id).status}, pid {c.pid}")
        lines = [line.text for line in engine.containers.logs(c.id)]
        print(f"    its log so far: {' | '.join(lines[-3:])}")
        before = _counter(engine, DEMO_NAME)
        archive = Path(tmp) / "amber-demo.tar.zst"
        _say(f"Checkpointing it into one portable archive (counter at {before})")
        engine.checkpoints.checkpoint([DEMO_NAME], CheckpointOptions(export=archive))
        at_checkpoint = _counter(engine, DEMO_NAME)
        print(
            f"    {archive.name}: {human_size(archive.stat().st_size)}, container now "
            f"{engine.containers.store.get(DEMO_NAME).status}, counter froze at {at_checkpoint}"
        )
        head = read_head(archive)
        print(
            f"    archive: container {head.config.get('name')}, image {head.config.get('rootfsImageName')}, "
            f"runtime {head.config.get('runtime')}, compression {head.compression}"
        )
        engine.containers.remove(DEMO_NAME, force=True)
        _say("Restoring it from the archive (the runtime comes from the archive)")
        restored, _ = engine.checkpoints.restore_archive(archive, RestoreOptions())
        time.sleep(1.0)
        after = _counter(engine, DEMO_NAME)
        print(f"    {restored.name} is running again under {restored.runtime}; counter {at_checkpoint} -> {after}")
        if after <= at_checkpoint:
            raise AmberError(f"the restored counter did not go on ({at_checkpoint} -> {after})")
        _say("Stopping and removing it")
        engine.containers.remove(DEMO_NAME, force=True)
        print("    done: the counter went on from where it was checkpointed.")
    return ExitCode.OK


def cmd_info(args: argparse.Namespace, engine: Engine) -> int:
    print(f"root:     {engine.settings.root}")
    print(f"runroot:  {engine.settings.runroot}")
    print(f"default runtime: {engine.settings.default_runtime}")
    print(f"criu:     {criu.version_string()} (dirty memory tracking: {'yes' if criu.dirty_tracking() else 'no'})")
    for r in runtime.installed():
        print(f"runtime:  {r.kind} {r.version} at {r.path} (checkpoint: {'yes' if r.criu else 'no'})")
    for conf in ("/etc/criu/default.conf", "/etc/criu/runc.conf", "/etc/criu/crun.conf"):
        path = Path(conf)
        if path.is_file():
            print(f"{conf} (overrides what the runtimes pass to CRIU):")
            for line in path.read_text(errors="replace").splitlines():
                print(f"    {line}")
    return ExitCode.OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run, checkpoint, restore a counting container, saying each step")
    p.add_argument("--runtime", help="runtime for the demo container (default from the config)")
    p.set_defaults(handler=cmd_demo)
    p = sub.add_parser("info", help="show the host's checkpoint stack and CRIU config files")
    p.set_defaults(handler=cmd_info)
