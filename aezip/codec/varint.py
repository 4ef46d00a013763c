"""Unsigned LEB128 integers: 7 bits a byte, low bits first, the high bit set on every byte
but the last (formats/aezip-container-v5.md §2, formats/aezip-frame-v1.md)."""

from __future__ import annotations

from ..errors import ContainerError

MAX_BYTES = 10  # enough for any integer below 2**70; more is a damaged stream


def pack(n: int) -> bytes:
    if n < 0:
        raise ValueError(f"a varint is unsigned, got {n}")
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


class Reader:
    """Reads varints and byte strings from ``data`` in turn; ContainerError when it ends
    too soon (``what`` names the thing read in that message)."""

    def __init__(self, data: bytes, what: str):
        self.data, self.pos, self.what = memoryview(data), 0, what

    def varint(self) -> int:
        n = shift = 0
        for i in range(MAX_BYTES):
            if self.pos >= len(self.data):
                break
            b = self.data[self.pos]
            self.pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n
        raise ContainerError(f"{self.what} ends inside a number or holds one too long; it is corrupted")

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ContainerError(f"{self.what} is shorter than its contents declare; it is corrupted")
        out = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return out

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.pos)
