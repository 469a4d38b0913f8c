"""Writes record files; also the Recorder sink that records a trace as it runs."""

from __future__ import annotations

import errno
import json
import sys
import zlib
from pathlib import Path
from typing import Any, BinaryIO

from tracer.collect.snapshot import Snapshot, TraceHeader
from tracer.collect.summary import Summary
from tracer.errors import TracerError
from tracer.recordfile.format import (
    FORMAT_MAJOR,
    FORMAT_MINOR,
    KIND_END,
    KIND_FRAME,
    KIND_HEADER,
    KIND_MARKER,
    MAGIC,
    P_FIELDS,
    PREFIX,
    RECORD_CRC,
    RECORD_HEAD,
    encode_frame,
)


class RecordWriter:
    def __init__(self, path: str | Path, header: TraceHeader, extra: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        try:
            self._file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        except OSError as err:
            raise TracerError(f"cannot write {self.path}: {err.strerror}") from None
        self._deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.failed: str | None = None
        self._raw_write(PREFIX.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR, 0))
        self.write(
            KIND_HEADER,
            {
                "format": f"{FORMAT_MAJOR}.{FORMAT_MINOR}",
                "header": header.to_json(),
                "p_fields": list(P_FIELDS),
                **(extra or {}),
            },
        )

    def _raw_write(self, data: bytes) -> None:
        if self.failed:
            return
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as err:
            # A full disk stops the recording, not the trace: what was flushed stays readable.
            self.failed = f"recording to {self.path} stopped: {err.strerror}"
            if err.errno != errno.ENOSPC:
                self.failed += f" (errno {err.errno})"
            print(f"mcalltrace: {self.failed}", file=sys.stderr)

    def write(self, kind: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        record = RECORD_HEAD.pack(len(body), kind) + body + RECORD_CRC.pack(zlib.crc32(body))
        self._raw_write(self._deflate.compress(record) + self._deflate.flush(zlib.Z_SYNC_FLUSH))

    def frame(self, snapshot: Snapshot) -> None:
        self.write(KIND_FRAME, encode_frame(snapshot))

    def marker(self, marker: dict[str, Any]) -> None:
        self.write(KIND_MARKER, marker)

    def close(self, summary: dict[str, Any] | None = None) -> None:
        if self._file.closed:
            return
        if summary is not None:
            self.write(KIND_END, summary)
        self._raw_write(self._deflate.flush(zlib.Z_FINISH))
        self._file.close()


class RecorderSink:
    """Records every snapshot and capture marker of a trace to a file."""

    def __init__(self, path: str | Path, extra: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.extra = extra or {}
        self.writer: RecordWriter | None = None

    def start(self, header: TraceHeader) -> None:
        self.writer = RecordWriter(self.path, header, self.extra)

    def update(self, snapshot: Snapshot) -> None:
        assert self.writer is not None
        self.writer.frame(snapshot)

    def mark(self, marker: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.marker(marker)

    def finish(self, summary: Summary, reason: str) -> None:
        if self.writer is not None:
            self.writer.close({**summary.to_json(), "end_reason": reason})
