"""A frame stream as a peer might deliver it, for the C-against-Python decoder comparisons: a byte
flipped anywhere (length fields included) or the stream cut short, then split into reads at random
points, some of them as bytearrays (the buffer kinds a transport hands over)."""
from __future__ import annotations

import random


def mangled_reads(rng: random.Random, data: bytes, mangle: int) -> list[bytes | bytearray]:
    """``data`` with ``mangle`` 1: one byte replaced; 2: cut at a random length; 0: as it is; then
    cut into up to four reads."""
    if mangle == 1 and data:
        i = rng.randrange(len(data))
        data = data[:i] + bytes([rng.randrange(256)]) + data[i + 1:]
    elif mangle == 2:
        data = data[:rng.randrange(len(data) + 1)]
    cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(4)))
    pieces: list[bytes | bytearray] = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
    if rng.random() < 0.3:
        pieces = [bytearray(p) for p in pieces]
    return pieces
