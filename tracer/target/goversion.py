"""Which Go toolchain built a binary, and how we know.

Sources, in order of trust:
  buildinfo       the `.go.buildinfo` blob the linker writes (what `go version -m` reads);
  buildVersion    the runtime's own `runtime.buildVersion` string, found through .symtab;
  buildVersion-scan  the same string found without symbols: a "go1.N..." string in .rodata that a
                  Go string header (pointer, length) in the data sections points at;
  pclntab         only the pclntab magic, which narrows the version to a range.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from tracer.target.elfimage import ElfImage

BUILDINFO_MAGIC = b"\xff Go buildinf:"
_FLAG_INLINE_STRINGS = 0x2
_VERSION_RE = re.compile(rb"go1\.(\d+)(?:\.(\d+))?((?:rc|beta)\d+)?")

# The oldest and newest Go release mcalltrace is tested against (see tests/toolchains.py).
OLDEST_SUPPORTED = (1, 19)
NEWEST_TESTED = (1, 27)


@dataclass(frozen=True)
class GoVersion:
    major: int
    minor: int
    patch: int = 0
    text: str = ""

    @property
    def key(self) -> str:
        """The offsets-table key: struct layouts change between minor releases, not patches."""
        return f"{self.major}.{self.minor}"

    def __str__(self) -> str:
        return self.text or f"go{self.major}.{self.minor}.{self.patch}"


def parse_version(text: str) -> GoVersion | None:
    """'go1.25.5', 'go1.21rc2', 'devel go1.26-abc ...' -> GoVersion; None when there is none."""
    match = _VERSION_RE.search(text.encode())
    if match is None:
        return None
    return GoVersion(1, int(match.group(1)), int(match.group(2) or 0), text.strip())


@dataclass(frozen=True)
class BuildInfo:
    version: str
    settings: dict[str, str] = field(default_factory=dict)
    main_path: str = ""


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """A uvarint at `pos`; ValueError when it runs past the blob or past 64 bits (damage)."""
    value = shift = 0
    for _ in range(10):  # a 64-bit value takes at most 10 bytes
        if pos >= len(data):
            raise ValueError("a length runs past the end of .go.buildinfo")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise ValueError("a length in .go.buildinfo is longer than 64 bits")


def _read_inline_string(data: bytes, pos: int) -> tuple[str, int]:
    """A varint-prefixed string (Go 1.18+ buildinfo), bounded by the blob it must lie in."""
    length, pos = _read_varint(data, pos)
    if length > len(data) - pos:
        raise ValueError(f"a string of {length} bytes runs past the end of .go.buildinfo")
    return data[pos : pos + length].decode(errors="replace"), pos + length


def _parse_modinfo(modinfo: str) -> tuple[dict[str, str], str]:
    # The linker wraps modinfo in 16-byte sentinels; strip them as debug/buildinfo does.
    if len(modinfo) >= 33 and modinfo[-17] == "\n":
        modinfo = modinfo[16:-16]
    settings: dict[str, str] = {}
    main_path = ""
    for line in modinfo.splitlines():
        parts = line.split("\t")
        if parts[0] == "build" and len(parts) >= 2 and "=" in parts[1]:
            key, _, value = parts[1].partition("=")
            settings[key] = value
        elif parts[0] == "path" and len(parts) >= 2:
            main_path = parts[1]
    return settings, main_path


def _buildinfo_blob(image: ElfImage) -> tuple[int, bytes] | None:
    """(link-time address, bytes) of the buildinfo blob: its section, else what follows the magic
    in the writable segment that holds it. Parsing stays within these bytes."""
    section = image.section(".go.buildinfo")
    if section is not None:
        return section.vaddr, image.section_bytes(".go.buildinfo") or b""
    for segment in image.load_segments:
        if not segment.flags & 0x2:  # only writable segments hold it
            continue
        data = image.file_view(segment.offset, segment.filesz).tobytes()
        position = data.find(BUILDINFO_MAGIC)
        while position >= 0 and position % 16:
            position = data.find(BUILDINFO_MAGIC, position + 1)
        if position >= 0:
            return segment.vaddr + position, data[position:]
    return None


def read_buildinfo(image: ElfImage) -> BuildInfo | None:
    """Parse `.go.buildinfo` (found by section name or, failing that, by its magic).

    None when there is none; UnsupportedTarget when there is one whose lengths or pointers lead
    outside it (a damaged file: reading on would allocate or index by garbage).
    """
    blob = _buildinfo_blob(image)
    if blob is None:
        return None
    blob_vaddr, data = blob
    if len(data) < 32 or not data.startswith(BUILDINFO_MAGIC):
        return None
    pointer_size, flags = data[14], data[15]
    try:
        if flags & _FLAG_INLINE_STRINGS:
            # Go 1.18+: version and modinfo follow the header as varint-prefixed strings.
            version, pos = _read_inline_string(data, 32)
            modinfo, _ = _read_inline_string(data, pos)
        else:
            # Before Go 1.18 the header holds pointers to two Go string headers.
            if pointer_size != 8:
                return None
            version = _read_go_string(image, image.read_pointer(blob_vaddr + 16))
            modinfo = _read_go_string(image, image.read_pointer(blob_vaddr + 24))
    except ValueError as err:
        raise image.corrupt(f"unreadable .go.buildinfo ({err})") from None
    settings, main_path = _parse_modinfo(modinfo)
    return BuildInfo(version=version, settings=settings, main_path=main_path)


def _read_go_string(image: ElfImage, header_vaddr: int) -> str:
    """The string a Go string header (pointer, length) at `header_vaddr` names; ValueError when
    the header or the bytes lie outside the file's segments."""
    data_pointer = image.read_pointer(header_vaddr)
    length = image.read_u64(header_vaddr + 8)
    if not data_pointer or length > 1 << 20:
        return ""
    return image.read(data_pointer, length).decode(errors="replace")


def version_from_symbol(image: ElfImage) -> str | None:
    symbol = image.find_symbols({"runtime.buildVersion"}).get("runtime.buildVersion")
    if symbol is None:
        return None
    try:
        text = _read_go_string(image, symbol.value)
    except ValueError:
        return None  # the symbol or its string lies outside the file: try the other sources
    return text or None


def version_from_scan(image: ElfImage) -> str | None:
    """Find runtime.buildVersion without symbols.

    A "go1.N" string alone proves little (the standard library mentions Go versions), so a
    candidate counts only if a Go string header in .data/.noptrdata points at it with a length that
    covers the whole version, which is how the runtime's buildVersion variable is laid out.
    """
    rodata = image.section(".rodata")
    if rodata is None:
        return None
    data = image.section_bytes(".rodata") or b""
    candidates: dict[int, int] = {}  # address -> minimal length
    for match in _VERSION_RE.finditer(data):
        if match.start() and data[match.start() - 1 : match.start()].isalnum():
            continue
        candidates[rodata.vaddr + match.start()] = match.end() - match.start()
    if not candidates:
        return None

    def accept(address: int, length: int) -> str | None:
        minimal = candidates.get(address)
        if minimal is None or not minimal <= length <= minimal + 64:
            return None
        try:
            return image.read(address, length).decode(errors="replace")
        except ValueError:  # .rodata's header places it outside every segment: not this way
            return None

    if image.is_pie:
        for offset, value in image.relocations.items():
            if value in candidates:
                try:
                    length = image.read_u64(offset + 8)
                except ValueError:  # a relocation of a word outside the file: not a string header
                    continue
                found = accept(value, length)
                if found:
                    return found
        return None
    for name in (".noptrdata", ".data"):
        section_data = image.section_bytes(name)
        if not section_data:
            continue
        words = struct.unpack_from(f"<{len(section_data) // 8}Q", section_data)
        for index in range(len(words) - 1):
            if words[index] in candidates:
                found = accept(words[index], words[index + 1])
                if found:
                    return found
    return None
