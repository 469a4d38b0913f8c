"""The record file format, version 1.2 (1.1 added the overhead budget: the header's
`overhead_budget` and each frame's `sampled`; 1.0 files read as exact, unbudgeted traces. 1.2
added the on-CPU samples: the header's `cpu_sample_hz` and each P's `cpu_samples`; older files
read as traces without them).

    file    := prefix deflate-stream
    prefix  := magic "MCTRACE\\0" (8 bytes) | major u16 | minor u16 | flags u32   (little endian)
    stream  := raw deflate of records, sync-flushed after every record
    record  := length u32 | kind u8 | payload (length bytes, UTF-8 JSON) | crc32(payload) u32
    kinds   := 1 header (first, exactly once), 2 frame (one per interval), 3 marker (a capture),
               4 end (the summary; absent if the tracer was killed)

Every record is flushed to the file as soon as it is written (a deflate sync flush), so after
`kill -9` or a full disk every whole record before the cut reads back; the reader reports a cut
tail. Readers accept every 1.x file: fields they do not know are ignored, fields an older file
lacks take their defaults. A major version change means an older reader must refuse the file.

Frames are columnar to stay small (under 10 KB a second at 64 Ps): each P is a list of values in
the order the header's `p_fields` names, so the field names are written once per file.
"""

from __future__ import annotations

import struct
from dataclasses import fields
from typing import Any

from tracer.collect.snapshot import PSample, Snapshot

MAGIC = b"MCTRACE\x00"
FORMAT_MAJOR = 1
FORMAT_MINOR = 2
PREFIX = struct.Struct("<8sHHI")
RECORD_HEAD = struct.Struct("<IB")
RECORD_CRC = struct.Struct("<I")
MAX_RECORD = 64 * 1024 * 1024

KIND_HEADER = 1
KIND_FRAME = 2
KIND_MARKER = 3
KIND_END = 4

P_FIELDS: tuple[str, ...] = tuple(item.name for item in fields(PSample))


class RecordFileError(Exception):
    """A file that cannot be read: wrong magic, newer major version, corruption."""


def encode_p(sample: PSample) -> list[Any]:
    values: list[Any] = []
    for name in P_FIELDS:
        value = getattr(sample, name)
        values.append(list(value) if isinstance(value, tuple) else value)
    return values


def decode_p(values: list[Any], names: list[str]) -> PSample:
    data = dict(zip(names, values, strict=False))
    return PSample.from_json(data)


def encode_frame(snapshot: Snapshot) -> dict[str, Any]:
    data = snapshot.to_json()
    del data["type"], data["totals"]  # totals are derived
    data["per_p"] = [encode_p(sample) for sample in snapshot.per_p]
    data["no_p"] = encode_p(snapshot.no_p)
    return data


def decode_frame(data: dict[str, Any], names: list[str]) -> Snapshot:
    data = dict(data)
    data["per_p"] = [decode_p(values, names).to_json() for values in data["per_p"]]
    data["no_p"] = decode_p(data["no_p"], names).to_json()
    return Snapshot.from_json(data)
