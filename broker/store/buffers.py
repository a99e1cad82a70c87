"""The one type of byte input the format decoders read: ``bytes``, ``bytearray``, ``memoryview``
or an ``mmap`` of a store file. They read it through ``len()`` and the buffer protocol
(``struct.unpack_from``, ``zlib.crc32``, ``memoryview(...)``), never by indexing, so any of those
fits without a copy."""
from __future__ import annotations

from typing import Protocol


class ByteView(Protocol):
    """Anything with a length that exposes its bytes through the buffer protocol."""

    def __len__(self) -> int: ...

    def __buffer__(self, flags: int, /) -> memoryview: ...
