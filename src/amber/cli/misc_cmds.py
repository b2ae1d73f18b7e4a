"""`amber demo` (the README's first command ends here), `amber info` (host diagnostics) and
`amber version`. The work is the engine's (engine/demo.py, engine/host_info.py): these print."""

from __future__ import annotations

import argparse
import shlex
from typing import TYPE_CHECKING

from amber import __version__
from amber.cli.output import human_size
from amber.errors import ExitCode

if TYPE_CHECKING:
    from amber.engine import Engine
    from amber.engine.demo import DemoEvent
    from amber.engine.host_info import HostInfo


def show_event(event: DemoEvent) -> None:
    """Print one step of the demo."""
    from amber.engine import demo

    match event:
        case demo.Step(text):
            print(f"\n--> {text}", flush=True)
        case demo.ImageBuilt(image):
            print(f"    image {image.name} ({image.id[:12]})")
        case demo.Started(c, runtime, command, log_tail):
            print(f"    amber run -d --name {c.name} --runtime {runtime} {demo.DEMO_IMAGE} {shlex.join(command)}")
            print(f"    {c.name} is {c.status}, pid {c.pid}")
            print(f"    its log so far: {' | '.join(log_tail)}")
        case demo.Checkpointed(archive, size, status, counter, s):
            print(f"    {archive.name}: {human_size(size)}, container now {status}, counter froze at {counter}")
            print(f"    archive: container {s.container}, image {s.image}, runtime {s.runtime}, ", end="")
            print(f"compression {s.compression}")
        case demo.Restored(c, before, after):
            print(f"    {c.name} is running again under {c.runtime}; counter {before} -> {after}")
        case demo.Finished():
            print("    done: the counter went on from where it was checkpointed.")


def cmd_demo(args: argparse.Namespace, engine: Engine) -> int:
    for event in engine.demo(runtime=args.runtime):
        show_event(event)
    return ExitCode.OK


def _criu_line(info: HostInfo) -> str:
    if not info.criu_installed:
        return "not installed (make setup installs it)"
    return f"{info.criu_version} (dirty memory tracking: {'yes' if info.dirty_tracking else 'no'})"


def cmd_info(args: argparse.Namespace, engine: Engine) -> int:
    info = engine.host_info()
    print(f"root:     {info.root}")
    print(f"runroot:  {info.runroot}")
    print(f"default runtime: {info.default_runtime}")
    print(f"criu:     {_criu_line(info)}")
    for r in info.runtimes:
        print(f"runtime:  {r.kind} {r.version} at {r.path} (checkpoint: {'yes' if r.criu else 'no'})")
    for conf in info.criu_configs:
        print(f"{conf.path} (overrides what the runtimes pass to CRIU):")
        for line in conf.text.splitlines():
            print(f"    {line}")
    return ExitCode.OK


def cmd_version(args: argparse.Namespace, engine: Engine) -> int:
    info = engine.host_info()
    print(f"amber:    {__version__}")
    print(f"criu:     {info.criu_version or 'not installed'}")
    for r in info.runtimes:
        print(f"{r.kind + ':':<9} {r.version} ({r.path})")
    return ExitCode.OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run, checkpoint, restore a counting container, saying each step")
    p.add_argument("--runtime", help="runtime for the demo container (default from the config)")
    p.set_defaults(handler=cmd_demo)
    p = sub.add_parser("info", help="show the host's checkpoint stack and CRIU config files")
    p.set_defaults(handler=cmd_info)
    p = sub.add_parser("version", help="show the versions of amber, CRIU and the runtimes")
    p.set_defaults(handler=cmd_version)
