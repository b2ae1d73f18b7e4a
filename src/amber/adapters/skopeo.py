"""skopeo: copy images between OCI layouts and registries, and inspect them (through run()).

References are skopeo's transports: `oci:DIR:TAG` for a layout directory, `docker://HOST:PORT/NAME:TAG`
for a registry. A failure becomes an amber error naming the image and the registry, with a hint
for the usual causes (registry down, plain HTTP, unknown image, authentication).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from amber.adapters.run import find_tool, run
from amber.errors import AmberError, CommandError, NotFoundError, PreconditionError

DEFAULT_TIMEOUT = 600.0
POLICY = Path("/etc/containers/policy.json")
DOCKER = "docker://"


def oci_ref(directory: Path, tag: str) -> str:
    return f"oci:{directory}:{tag}"


def docker_ref(ref: str) -> str:
    """`HOST:PORT/NAME:TAG` or `docker://...` -> `docker://HOST:PORT/NAME:TAG`."""
    return ref if ref.startswith(DOCKER) else DOCKER + ref


def registry_of(ref: str) -> str:
    """The registry host of a docker reference (`docker.io` when it names none)."""
    first, sep, _ = ref.removeprefix(DOCKER).partition("/")
    return first if sep and ("." in first or ":" in first or first == "localhost") else "docker.io"


def _skopeo() -> str:
    return find_tool("skopeo", "push and pull images to and from registries")


def _policy_args() -> list[str]:
    # Without a policy file skopeo refuses everything; amber checks digests itself.
    return [] if POLICY.is_file() else ["--insecure-policy"]


# (what stderr says, error class, what the message says after the image, hint); {registry} filled in
_CAUSES: tuple[tuple[tuple[str, ...], type[AmberError], str, str], ...] = (
    (
        ("server gave http response to https client",),
        AmberError,
        "registry {registry} speaks plain HTTP, not HTTPS",
        "add --tls-verify=false for a registry without TLS (only on a network you trust)",
    ),
    (
        ("certificate", "x509", "tls:"),
        AmberError,
        "the TLS certificate of registry {registry} is not trusted",
        "install the registry's CA certificate, or add --tls-verify=false on a network you trust",
    ),
    (
        ("connection refused", "no such host", "no route to host"),
        AmberError,
        "cannot connect to registry {registry}",
        "check the registry address; is a registry running at {registry}?",
    ),
    (
        ("unauthorized", "authentication required", "denied"),
        AmberError,
        "registry {registry} refused access",
        "log in first (skopeo login {registry}), or check the name",
    ),
    (
        ("manifest unknown", "name unknown", "not found"),
        NotFoundError,
        "registry {registry} has no such image",
        "check the name and tag (skopeo list-tags docker://{registry}/NAME lists the tags)",
    ),
)


def _error(exc: CommandError, image: str, registry: str, verb: str) -> AmberError:
    err = (exc.stderr or exc.stdout).lower()
    if exc.returncode == -1:
        return AmberError(
            f"{verb} {image}: registry {registry} did not answer in time",
            hint=f"check that {registry} is up and reachable",
            details=exc.details,
        )
    for needles, cls, what, hint in _CAUSES:
        if any(n in err for n in needles):
            return cls(f"{verb} {image}: {what.format(registry=registry)}", hint.format(registry=registry), exc.details)
    return AmberError(
        f"{verb} {image}: skopeo failed (exit code {exc.returncode}) talking to registry {registry}",
        hint="see the lines above; run with --debug for the full command",
        details=exc.details,
    )


def copy(src: str, dest: str, *, tls_verify: bool = True, timeout: float = DEFAULT_TIMEOUT) -> None:
    """`skopeo copy SRC DEST` between `oci:DIR:TAG` and `docker://...` references.

    Raises PreconditionError without skopeo, NotFoundError for an unknown image, AmberError otherwise.
    """
    argv: list[str] = [_skopeo(), *_policy_args(), "copy", "--quiet"]
    if src.startswith(DOCKER):
        argv.append(f"--src-tls-verify={str(tls_verify).lower()}")
    if dest.startswith(DOCKER):
        argv.append(f"--dest-tls-verify={str(tls_verify).lower()}")
    argv += [src, dest]
    remote = src if src.startswith(DOCKER) else dest
    verb = "pulling" if src.startswith(DOCKER) else "pushing"
    image = remote.removeprefix(DOCKER)
    try:
        run(argv, timeout=timeout)
    except CommandError as exc:
        raise _error(exc, image, registry_of(remote), verb) from exc


def inspect(ref: str, *, tls_verify: bool = True, raw: bool = False, timeout: float = 120.0) -> dict[str, Any]:
    """`skopeo inspect` of a reference: its summary, or with `raw` the manifest itself."""
    argv: list[str] = [_skopeo(), *_policy_args(), "inspect"]
    if ref.startswith(DOCKER):
        argv.append(f"--tls-verify={str(tls_verify).lower()}")
    if raw:
        argv.append("--raw")
    argv.append(ref)
    try:
        out = run(argv, timeout=timeout).stdout
    except CommandError as exc:
        raise _error(exc, ref.removeprefix(DOCKER), registry_of(ref), "inspecting") from exc
    try:
        value = json.loads(out)
    except ValueError as exc:
        raise PreconditionError(
            f"skopeo inspect {ref} printed something that is not JSON", hint="check the installed skopeo (1.x)"
        ) from exc
    if not isinstance(value, dict):
        raise PreconditionError(f"skopeo inspect {ref} printed a JSON {type(value).__name__}, not an object")
    return value
