"""The one type of byte input the format decoders read: ``bytes``, ``bytearray``, ``memoryview``
or an ``mmap`` of a store file. They read it through ``len()``, the buffer protocol
(``struct.unpack_from``, ``zlib.crc32``, ``bytes(...)``), a byte at an index and slices, so any of
those fits without a copy."""
from __future__ import annotations

from typing import Protocol, SupportsIndex, overload


class ByteView(Protocol):
    """Anything with a length, bytes by index and slice, and the buffer protocol."""

    def __len__(self) -> int: ...

    def __buffer__(self, flags: int, /) -> memoryview: ...

    @overload
    def __getitem__(self, key: SupportsIndex, /) -> int: ...

    @overload
    def __getitem__(self, key: slice, /) -> ByteView: ...
