"""Reads record files of any 1.x version, record by record, noticing a cut tail."""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracer.collect.snapshot import Snapshot, TraceHeader
from tracer.errors import EXIT_BAD_FILE, TracerError
from tracer.recordfile.format import (
    FORMAT_MAJOR,
    KIND_END,
    KIND_FRAME,
    KIND_HEADER,
    KIND_MARKER,
    MAGIC,
    MAX_RECORD,
    PREFIX,
    RECORD_CRC,
    RECORD_HEAD,
    decode_frame,
)

_CHUNK = 1 << 16
# How a JSON record of the wrong shape fails to decode into the trace types (a missing key, a
# list where an object belongs, a value of the wrong type): the checksum only proves the record
# is what was written, so a file written by something else, or crafted, gets here.
_SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError)


class BadRecordFile(TracerError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_BAD_FILE)


@dataclass
class Recording:
    path: Path
    version: str
    header: TraceHeader
    metadata: dict[str, Any]  # the header record as written (tool extras included)
    frames: list[Snapshot] = field(default_factory=list)
    markers: list[dict[str, Any]] = field(default_factory=list)
    end: dict[str, Any] | None = None
    truncated: bool = False


class RecordReader:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            raise BadRecordFile(f"{self.path}: no such file") from None
        except OSError as err:
            raise BadRecordFile(f"{self.path}: {err.strerror}") from None
        prefix = self._file.read(PREFIX.size)
        if len(prefix) < PREFIX.size or not prefix.startswith(MAGIC):
            self._file.close()
            raise BadRecordFile(f"{self.path}: not an mcalltrace record file")
        _magic, self.major, self.minor, _flags = PREFIX.unpack(prefix)
        if self.major > FORMAT_MAJOR:
            self._file.close()
            raise BadRecordFile(
                f"{self.path}: record format {self.major}.{self.minor} is newer than this mcalltrace "
                f"reads ({FORMAT_MAJOR}.x); upgrade mcalltrace"
            )
        self.truncated = False

    def close(self) -> None:
        self._file.close()

    def records(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(kind, payload) for each whole record; sets `truncated` when the file ends mid-way."""
        inflate = zlib.decompressobj(-15)
        # A bytearray with a read position: appending is amortised and dropping the records read
        # is one front deletion per chunk, so many small records or one large record (up to
        # MAX_RECORD, arriving over many chunks) cost linear time, not a copy per record or chunk.
        buffer = bytearray()
        index = 0
        while True:
            chunk = self._file.read(_CHUNK)
            try:
                buffer += inflate.decompress(chunk) if chunk else inflate.flush()
            except zlib.error as err:
                raise BadRecordFile(f"{self.path}: corrupt after record {index} ({err})") from None
            position = 0
            while len(buffer) - position >= RECORD_HEAD.size:
                length, kind = RECORD_HEAD.unpack_from(buffer, position)
                if length > MAX_RECORD:
                    raise BadRecordFile(f"{self.path}: corrupt record {index} (length {length})")
                start = position + RECORD_HEAD.size
                end = start + length + RECORD_CRC.size
                if len(buffer) < end:
                    break
                body = bytes(buffer[start : start + length])
                (crc,) = RECORD_CRC.unpack_from(buffer, start + length)
                if zlib.crc32(body) != crc:
                    raise BadRecordFile(f"{self.path}: corrupt record {index} (checksum mismatch)")
                try:
                    payload = json.loads(body)
                except (ValueError, RecursionError):  # RecursionError: nesting too deep to be ours
                    raise BadRecordFile(f"{self.path}: corrupt record {index} (not JSON)") from None
                if not isinstance(payload, dict):  # every record kind is a JSON object
                    raise BadRecordFile(f"{self.path}: corrupt record {index} (not a JSON object)")
                position = end
                index += 1
                yield kind, payload
            del buffer[:position]
            if not chunk:
                if inflate.eof and buffer:
                    # The stream was finished properly, so a partial record is damage, not a cut.
                    raise BadRecordFile(f"{self.path}: corrupt record {index} (incomplete)")
                # A finished stream has seen its final block; anything else was cut short.
                self.truncated = not inflate.eof
                return

    def _bad_shape(self, index: int, err: Exception) -> BadRecordFile:
        what = f"missing field {err}" if isinstance(err, KeyError) else " ".join(str(err).split())
        return BadRecordFile(f"{self.path}: corrupt record {index} (not a valid record: {what})")

    def read(self) -> Recording:
        """The whole file. Raises BadRecordFile for unreadable files; a cut tail only sets
        `truncated` (the whole records before it are returned)."""
        recording: Recording | None = None
        names: list[str] = []
        for index, (kind, payload) in enumerate(self.records()):
            if recording is None:
                if kind != KIND_HEADER:
                    raise BadRecordFile(f"{self.path}: corrupt: the first record is not the header")
                try:
                    names = list(payload.get("p_fields", []))
                    header = TraceHeader.from_json(payload["header"])
                except _SHAPE_ERRORS as err:
                    raise self._bad_shape(index, err) from None
                recording = Recording(
                    path=self.path,
                    version=f"{self.major}.{self.minor}",
                    header=header,
                    metadata=payload,
                )
            elif kind == KIND_FRAME:
                try:
                    frame = decode_frame(payload, names)
                except _SHAPE_ERRORS as err:
                    raise self._bad_shape(index, err) from None
                recording.frames.append(frame)
            elif kind == KIND_MARKER:
                recording.markers.append(payload)
            elif kind == KIND_END:
                recording.end = payload
            # Unknown kinds come from newer minor versions: skipped.
        if recording is None:
            raise BadRecordFile(f"{self.path}: truncated before its header")
        recording.truncated = self.truncated or recording.end is None
        return recording


def read_recording(path: str | Path) -> Recording:
    reader = RecordReader(path)
    try:
        return reader.read()
    finally:
        reader.close()
