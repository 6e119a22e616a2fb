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

__all__ = ["ChangeSlots", "current_pid"]

_SLOT = struct.Struct("<Q")
_OFFSETS = 10_000  # keys whose slot offset is remembered (a request's check skips the crc32)

#: This process's id, kept current across forks: a syscall per check cost a third of it.
_pid = os.getpid()


def _forked() -> None:
    global _pid  # set in a forked child, read by every check
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def current_pid() -> int:
    """This process's id, without a system call (what a process checks per call to tell a
    forked child from its parent)."""
    return _pid


class ChangeSlots:
    """``<path>``'s change slots (created, for its owner only, when missing)."""

    def __init__(self, path: str, slots: int = 4096) -> None:
        self.path = path
        self._slots = slots
        self._map: mmap.mmap | None = None
        self._pid = 0
        self._offsets: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"ChangeSlots({self.path!r})"

    def _mapped(self) -> mmap.mmap:
        if self._map is None or self._pid != _pid:
            size = self._slots * _SLOT.size
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_size < size:
                    os.ftruncate(fd, size)
                self._map = mmap.mmap(fd, size)
            finally:
                os.close(fd)
            self._pid = _pid
        return self._map

    def _offset(self, key: str) -> int:
        offset = self._offsets.get(key)
        if offset is None:
            offset = (zlib.crc32(key.encode("utf-8", "surrogatepass")) % self._slots) * _SLOT.size
            if len(self._offsets) >= _OFFSETS:
                self._offsets.clear()
            self._offsets[key] = offset
        return offset

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
        if self._map is not None and self._pid == _pid:
            self._map.close()
        self._map = None
