"""A bulk consumer for a BPF ring buffer, reading its memory through mmap.

bcc hands each ring-buffer record to a Python callback, which costs microseconds per event; a busy
target sends 100k and more events a second during a capture. The kernel lets a consumer map the
ring itself (linux/bpf.h, kernel/bpf/ringbuf.c): one read-write page holding the consumer
position, then one read-only page holding the producer position followed by the data area mapped
twice, so a record never wraps. Records are an 8-byte header (length with a busy and a discard
bit, page offset) and the payload, padded to 8 bytes.
"""

from __future__ import annotations

import mmap
import struct

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER_SIZE = 8
_U64 = struct.Struct("<Q")
_HEADER = struct.Struct("<II")


class RingBufferReader:
    def __init__(self, map_fd: int, data_size: int) -> None:
        page = mmap.PAGESIZE
        self.mask = data_size - 1
        self._consumer = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._producer = mmap.mmap(map_fd, page + 2 * data_size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self._data = memoryview(self._producer)[page:]

    def read(self) -> list[bytes]:
        """Every committed record's payload since the last read, in order; frees their space."""
        consumer = _U64.unpack_from(self._consumer, 0)[0]
        producer = _U64.unpack_from(self._producer, 0)[0]
        payloads: list[bytes] = []
        while consumer < producer:
            start = consumer & self.mask
            length, _page_offset = _HEADER.unpack_from(self._data, start)
            if length & BUSY_BIT:
                break  # still being written: the rest waits for the next read
            size = length & ~(BUSY_BIT | DISCARD_BIT)
            if not length & DISCARD_BIT:
                payloads.append(bytes(self._data[start + HEADER_SIZE : start + HEADER_SIZE + size]))
            consumer += (HEADER_SIZE + size + 7) & ~7
        _U64.pack_into(self._consumer, 0, consumer)
        return payloads

    def close(self) -> None:
        self._data.release()
        self._producer.close()
        self._consumer.close()
