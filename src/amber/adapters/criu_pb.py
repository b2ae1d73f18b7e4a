"""A minimal reader of CRIU image files for the few fields a plain restore needs, without pycriu.

pycriu loads every protobuf description CRIU has (0.05-0.2 s of import); an in-place restore
only needs the processes' root and working directories (fs-*.img, files.img), so it reads those
here: `magic + {u32 size + protobuf}*`, fields walked by number (the numbers are CRIU's .proto
files'; tests compare them with pycriu's). Anything malformed raises ValueError.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

IMG_COMMON = 0x54564319
FS_MAGIC = 0x51403912
FILES_MAGIC = 0x56303138
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


def entries(data: bytes, magic: int) -> Iterator[bytes]:
    """The protobuf payload of each entry of an image of type `magic`."""
    if len(data) < 8 or struct.unpack_from("<II", data) != (IMG_COMMON, magic):
        raise ValueError("not a CRIU image of the expected type")
    pos = 8
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError("truncated entry size")
        (size,) = struct.unpack_from("<i", data, pos)
        pos += 4
        if size < 0 or pos + size > len(data):
            raise ValueError("truncated entry")
        yield data[pos : pos + size]
        pos += size


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("bad varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def fields(msg: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field of a protobuf message: an int for varints and fixed
    sizes, the bytes of length-delimited fields (strings, nested messages)."""
    pos = 0
    while pos < len(msg):
        key, pos = _varint(msg, pos)
        number, kind = key >> 3, key & 7
        value: int | bytes
        if kind == _VARINT:
            value, pos = _varint(msg, pos)
        elif kind in (_FIXED64, _FIXED32):
            width = 8 if kind == _FIXED64 else 4
            if pos + width > len(msg):
                raise ValueError("truncated fixed field")
            value = int.from_bytes(msg[pos : pos + width], "little")
            pos += width
        elif kind == _BYTES:
            size, pos = _varint(msg, pos)
            if pos + size > len(msg):
                raise ValueError("truncated field")
            value = msg[pos : pos + size]
            pos += size
        else:
            raise ValueError(f"unsupported wire type {kind}")
        yield number, value


__all__ = ["FILES_MAGIC", "FS_MAGIC", "entries", "fields"]
