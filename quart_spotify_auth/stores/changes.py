"""Which keys changed, for the processes of one host sharing a SQLite file (which tells no one
of a write): ``<database>.changes``, mapped into every process, holds a slot per key hash. A
writer puts a new random number (never a counter: two writers could cancel out) in the key's
slot after its commit; a copy read after noting the slot is good while the slot holds it."""

from __future__ import annotations

import mmap
import os
import struct
import zlib

from ..signals import logger

__all__ = ["ChangeSlots"]

_SLOT = struct.Struct("<Q")


class ChangeSlots:
    """``<path>``'s change slots (created, for its owner only, when missing)."""

    def __init__(self, path: str, slots: int = 4096) -> None:
        self.path = path
        self._slots = slots
        self._map: mmap.mmap | None = None
        self._pid = 0

    def __repr__(self) -> str:
        return f"ChangeSlots({self.path!r})"

    def _mapped(self) -> mmap.mmap:
        if self._map is None or self._pid != os.getpid():
            size = self._slots * _SLOT.size
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_size < size:
                    os.ftruncate(fd, size)
                self._map = mmap.mmap(fd, size)
            finally:
                os.close(fd)
            self._pid = os.getpid()
        return self._map

    def _offset(self, key: str) -> int:
        return (zlib.crc32(key.encode("utf-8", "surrogatepass")) % self._slots) * _SLOT.size

    def seen(self, key: str) -> int:
        """The number in ``key``'s slot now (when the file cannot be read, a number never
        seen before: no copy is used)."""
        try:
            return int(_SLOT.unpack_from(self._mapped(), self._offset(key))[0])
        except OSError:
            return -int.from_bytes(os.urandom(8))

    def changed(self, key: str) -> None:
        """``key`` was written (call after the commit)."""
        try:
            _SLOT.pack_into(self._mapped(), self._offset(key), int.from_bytes(os.urandom(8)))
        except OSError as exc:  # other processes may use a stale copy for up to the cache ttl
            logger.warning("The change file %s cannot be written (%s)", self.path, exc)

    def close(self) -> None:
        if self._map is not None and self._pid == os.getpid():
            self._map.close()
        self._map = None
