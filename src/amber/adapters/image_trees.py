"""Image sources as trees of named files: an OCI layout or a docker save, as a directory or as
an uncompressed tar read in place; a compressed tar is unpacked first, hostile-safe."""

from __future__ import annotations

import contextlib
import tarfile
from pathlib import Path
from typing import IO, Protocol

from amber.adapters.layers import HOSTILE_HINT
from amber.adapters.tar.compression import READ_ERRORS, open_tar_stream
from amber.adapters.tar.extract import extract
from amber.adapters.tar.headers import members
from amber.adapters.tar.names import split_name
from amber.adapters.tar.policy import Duplicates, Policy
from amber.errors import ArchiveError

MAX_LINK_HOPS = 8
SUPPORTED = (
    "a rootfs tarball (tar, tar.gz, tar.zst, tar.xz; as for podman import), an OCI image layout "
    "directory, an oci-archive tarball, or a docker save tarball (registries are not supported yet)"
)


def not_an_image(path: Path, why: str) -> ArchiveError:
    return ArchiveError(f"{path} is not an image: {why}", hint=f"amber image import reads {SUPPORTED}")


def bad_image(path: Path, why: str) -> ArchiveError:
    return ArchiveError(
        f"{path}: {why}", hint="the image is damaged or was written by an unsupported tool; export it again"
    )


# -- trees: an OCI layout or docker save as a directory or an uncompressed tar -----------------


class Tree(Protocol):
    source: Path

    def open(self, name: str) -> IO[bytes]: ...


def _key(name: str) -> str:
    return "/".join(split_name(name))


class DirTree:
    """A directory: the user's OCI layout, or our private unpack of a compressed archive."""

    def __init__(self, root: Path, source: Path, aliases: dict[str, str] | None = None) -> None:
        self.root = root
        self.source = source
        self.aliases = aliases or {}

    def open(self, name: str) -> IO[bytes]:
        key = _checked_key(self.source, name)
        for _ in range(MAX_LINK_HOPS):
            if key not in self.aliases:
                break
            key = self.aliases[key]
        try:
            return (self.root / key).open("rb")
        except FileNotFoundError:
            raise bad_image(self.source, f"{name} is missing") from None
        except OSError as exc:
            raise bad_image(self.source, f"cannot read {name}: {exc.strerror}") from exc


def _checked_key(source: Path, name: str) -> str:
    """The normalized key of a name an image's metadata refers to, or the error naming it."""
    try:
        return _key(name)
    except ValueError as exc:
        raise bad_image(source, f"refers to {name!r}, but {exc}") from None


class TarTree:
    """An uncompressed tar read in place; symlinks and hard links inside it are resolved in it."""

    def __init__(self, tar: tarfile.TarFile, source: Path) -> None:
        self.tar = tar
        self.source = source
        self.members: dict[str, tarfile.TarInfo] = {}
        for m in members(tar, str(source)):
            with contextlib.suppress(ValueError):
                self.members[_key(m.name)] = m

    def open(self, name: str) -> IO[bytes]:
        key = _checked_key(self.source, name)
        for _ in range(MAX_LINK_HOPS):
            m = self.members.get(key)
            if m is None:
                raise bad_image(self.source, f"{name} is missing")
            if m.isreg():
                f = self.tar.extractfile(m)
                assert f is not None
                return f
            if not (m.issym() or m.islnk()):
                raise bad_image(self.source, f"{name} is not a regular file")
            key = _link_target(key, m)
        raise bad_image(self.source, f"{name}: too many levels of links")


def _link_target(key: str, m: tarfile.TarInfo) -> str:
    """Where a link member points, as a key in the same archive (ValueError when it leaves it)."""
    if m.islnk():
        return _key(m.linkname)
    parts: list[str] = [] if m.linkname.startswith("/") else key.split("/")[:-1]
    for comp in m.linkname.split("/"):
        if comp == "..":
            if not parts:
                raise ValueError(f"symlink {key} points outside the archive")
            parts.pop()
        elif comp not in ("", "."):
            parts.append(comp)
    return "/".join(parts)


def unpack(path: Path, work: Path) -> dict[str, str]:
    """Unpack the regular files of a compressed archive into `work` (ours, no symlinks in it),
    through the tar engine. Links are not created: they are returned as aliases {name: target}.
    """
    aliases: dict[str, str] = {}
    regular: set[str] = set()

    def observe(key: str, m: tarfile.TarInfo) -> None:
        regular.discard(key)
        if m.isreg():
            regular.add(key)
        elif m.issym() or m.islnk():
            try:
                aliases[key] = _link_target(key, m)
            except ValueError as exc:
                raise ArchiveError(f"{path}: member {m.name!r}: {exc}", hint=HOSTILE_HINT) from None

    try:
        with path.open("rb") as raw, open_tar_stream(raw) as plain:
            extract(plain, work, _UNPACK_POLICY, archive=str(path), want=regular.__contains__, observe=observe)
    except READ_ERRORS as exc:
        raise ArchiveError(
            f"could not unpack {path} into {work}: {exc}", hint=f"check free space under {work.parent}"
        ) from exc
    return aliases


# Only regular files are created, in a private directory: no owners, no xattrs, no specials.
_UNPACK_POLICY = Policy(duplicates=Duplicates.REPLACE, xattr_allowed=lambda _: False, hint=HOSTILE_HINT)
