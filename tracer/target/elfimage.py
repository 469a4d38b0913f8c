"""An ELF file opened once and read lazily: sections by name, memory by virtual address.

pyelftools parses the headers; bulk tables (symbols, relocations) are read with struct straight from
an mmap of the file, because walking tens of thousands of entries through pyelftools' per-entry
objects is what makes introspection of large Go binaries slow.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from dataclasses import dataclass
from functools import cached_property
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import Section

from tracer.errors import NoTarget, UnsupportedTarget

_ELF_MAGIC = b"\x7fELF"
_R_X86_64_64 = 1
_R_X86_64_RELATIVE = 8
_SYMBOL = struct.Struct("<IBBHQQ")  # Elf64_Sym: name, info, other, shndx, value, size
_RELA = struct.Struct("<QQq")  # Elf64_Rela: offset, info, addend
# What pyelftools raises on malformed headers besides its own ELFError: it seeks to offsets read
# from the file (ValueError, OSError, OverflowError for absurd ones), decodes names, and indexes
# tables by counts read from the file.
_PYELFTOOLS_PARSE_ERRORS = (
    ELFError,
    ValueError,
    OSError,
    OverflowError,
    IndexError,
    KeyError,
    struct.error,
    zlib.error,
)
# The largest read() the callers make is a function's code, which is in the file; anything
# bigger is a size read from a damaged file, refused before it allocates.
_MAX_READ = 1 << 30


@dataclass(frozen=True)
class LoadSegment:
    vaddr: int
    memsz: int
    offset: int
    filesz: int
    flags: int

    def contains(self, vaddr: int) -> bool:
        return self.vaddr <= vaddr < self.vaddr + self.memsz


@dataclass(frozen=True)
class SectionInfo:
    name: str
    vaddr: int
    offset: int
    size: int
    compressed: bool
    nobits: bool = False  # occupies no file space (.bss): no contents to read


@dataclass(frozen=True)
class ElfSymbol:
    name: str
    value: int
    size: int
    is_function: bool


class ElfImage:
    """A read-only view of one ELF file."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        except FileNotFoundError:
            raise NoTarget(f"{path}: no such file") from None
        except IsADirectoryError:
            raise UnsupportedTarget(f"{path}: is a directory, not an executable") from None
        except PermissionError:
            raise NoTarget(f"{path}: permission denied") from None
        size = os.fstat(self._file.fileno()).st_size
        head = self._file.read(4)
        if head != _ELF_MAGIC:
            self._file.close()
            raise UnsupportedTarget(f"{path}: not an ELF executable")
        self._file.seek(0)
        self._map = mmap.mmap(self._file.fileno(), size, access=mmap.ACCESS_READ)
        try:
            self._parse_headers()
        except UnsupportedTarget:
            self.close()
            raise

    def _parse_headers(self) -> None:
        try:
            self.elf = ELFFile(self._file)
        except _PYELFTOOLS_PARSE_ERRORS as err:
            raise self.corrupt(f"unreadable ELF header ({err})") from None
        machine = str(self.elf.header["e_machine"])  # an int when pyelftools does not know it
        if machine != "EM_X86_64" or self.elf.elfclass != 64:
            raise UnsupportedTarget(
                f"{self.path}: architecture {machine.removeprefix('EM_')} is not supported "
                "(mcalltrace traces x86-64 Go programs)"
            )
        # pyelftools parses section and program headers lazily; parse them all now, so that a
        # damaged header table is reported here once rather than raised from some later lookup.
        try:
            self._all_sections: list[Section] = list(self.elf.iter_sections())
            self._sections = {section.name: section for section in self._all_sections if section.name}
            segments = [
                (
                    seg["p_type"],
                    seg["p_vaddr"],
                    seg["p_memsz"],
                    seg["p_offset"],
                    seg["p_filesz"],
                    seg["p_flags"],
                )
                for seg in self.elf.iter_segments()
            ]
        except _PYELFTOOLS_PARSE_ERRORS as err:
            raise self.corrupt(f"unreadable section or program headers ({err})") from None
        self.load_segments: tuple[LoadSegment, ...] = tuple(
            LoadSegment(vaddr=vaddr, memsz=memsz, offset=offset, filesz=filesz, flags=flags)
            for kind, vaddr, memsz, offset, filesz, flags in segments
            if kind == "PT_LOAD"
        )
        if not self.load_segments:
            raise self.corrupt("no loadable segments")
        # Contents past the end of the file mean a truncated or damaged file. Checked once here,
        # it also keeps pyelftools from reading (and allocating) a section by a size read from
        # the file when it inflates or returns one.
        file_size = len(self._map)
        for segment in self.load_segments:
            if segment.offset + segment.filesz > file_size:
                raise self.corrupt(
                    f"the segment at {segment.vaddr:#x} runs past the end of the file (truncated?)"
                )
            # The ELF rule: a segment's file image is at most its memory image. read() and the
            # checks on function addresses rely on it to agree on what is mapped.
            if segment.filesz > segment.memsz:
                raise self.corrupt(
                    f"the segment at {segment.vaddr:#x} holds more bytes in the file than in memory"
                )
        for section in self._all_sections:
            if section["sh_type"] != "SHT_NOBITS" and section["sh_offset"] + section["sh_size"] > file_size:
                raise self.corrupt(
                    f"section {section.name or '?'} runs past the end of the file (truncated?)"
                )

    def corrupt(self, what: str) -> UnsupportedTarget:
        """The one-line error for a file whose contents contradict themselves."""
        reason = " ".join(what.split())  # messages of parsers may span lines; ours are one line
        return UnsupportedTarget(f"{self.path}: corrupt or unsupported Go binary: {reason}")

    def close(self) -> None:
        if getattr(self, "_map", None) is not None:
            self._map.close()
        self._file.close()

    def __enter__(self) -> ElfImage:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- layout -------------------------------------------------------------------------------

    @property
    def elf_type(self) -> str:
        """'EXEC' for fixed-address executables, 'DYN' for PIE and shared objects."""
        return str(self.elf.header["e_type"]).removeprefix("ET_")

    @property
    def is_pie(self) -> bool:
        return self.elf_type == "DYN"

    def has_section(self, name: str) -> bool:
        return name in self._sections

    @property
    def section_names(self) -> tuple[str, ...]:
        return tuple(self._sections)

    def section(self, name: str) -> SectionInfo | None:
        section = self._sections.get(name)
        if section is None:
            return None
        return SectionInfo(
            name=name,
            vaddr=section["sh_addr"],
            offset=section["sh_offset"],
            size=section["sh_size"],
            compressed=bool(section["sh_flags"] & 0x800),  # SHF_COMPRESSED
            nobits=section["sh_type"] == "SHT_NOBITS",
        )

    def section_bytes(self, name: str) -> bytes | None:
        """A section's contents (decompressed if need be), or None when absent or NOBITS."""
        section = self._sections.get(name)
        if section is None or section["sh_type"] == "SHT_NOBITS":
            return None
        if section["sh_flags"] & 0x800:
            try:
                return section.data()  # pyelftools inflates SHF_COMPRESSED sections
            except _PYELFTOOLS_PARSE_ERRORS as err:
                raise self.corrupt(f"section {name} does not decompress ({err})") from None
        start = section["sh_offset"]
        return self._map[start : start + section["sh_size"]]

    def _whole_entries(self, section: Section, entry: struct.Struct) -> bytes:
        """A table section's bytes cut to whole entries: iter_unpack refuses a ragged tail, which
        only a damaged sh_size gives (the slice itself stops at the end of the file)."""
        start, size = section["sh_offset"], section["sh_size"]
        data = self._map[start : start + size]
        return data[: len(data) - len(data) % entry.size]

    def _linked_section(self, section: Section) -> Section:
        """The section a symbol or relocation table names in sh_link (its strings or symbols)."""
        link = section["sh_link"]
        if not 0 <= link < len(self._all_sections):
            raise self.corrupt(f"section {section.name} links to section {link}, which does not exist")
        return self._all_sections[link]

    def file_view(self, offset: int, size: int) -> memoryview:
        return memoryview(self._map)[offset : offset + size]

    # ---- addresses ----------------------------------------------------------------------------

    def vaddr_to_file_offset(self, vaddr: int) -> int:
        """The file offset at which the byte mapped at link-time address `vaddr` lies.

        uprobes attach by file offset; for non-PIE Go binaries it differs from the address by the
        text segment's base, for PIE it is the address less the segment's delta.
        """
        for segment in self.load_segments:
            if segment.vaddr <= vaddr < segment.vaddr + segment.filesz:
                return vaddr - segment.vaddr + segment.offset
        raise ValueError(f"address {vaddr:#x} is not backed by the file")

    def read(self, vaddr: int, size: int) -> bytes:
        """Bytes at a link-time address as the loader maps them (zeros past the file-backed part)."""
        if not 0 <= size <= _MAX_READ:
            raise ValueError(f"refusing to read {size} bytes at {vaddr:#x}")
        for segment in self.load_segments:
            if segment.contains(vaddr):
                start = vaddr - segment.vaddr
                end = min(start + size, segment.memsz)
                from_file = max(0, min(end, segment.filesz) - start)
                data = self._map[segment.offset + start : segment.offset + start + from_file]
                return data + b"\x00" * (end - start - from_file)
        raise ValueError(f"address {vaddr:#x} is outside every loadable segment")

    def read_u64(self, vaddr: int) -> int:
        return struct.unpack("<Q", self.read(vaddr, 8))[0]

    def read_pointer(self, vaddr: int) -> int:
        """A pointer-sized word, with the dynamic relocation applied when one targets it.

        In PIE binaries the pointers in static data are stored as RELA addends and the word in
        the file may be zero; the relocation gives the link-time value.
        """
        relocated = self.relocations.get(vaddr)
        if relocated is not None:
            return relocated
        return self.read_u64(vaddr)

    @cached_property
    def relocations(self) -> dict[int, int]:
        """Link-time values of relocated words: r_offset -> value (RELATIVE and 64-bit absolute)."""
        values: dict[int, int] = {}
        if not self.is_pie:
            return values
        for section in self._all_sections:
            if section["sh_type"] != "SHT_RELA":
                continue
            symbols = None
            for r_offset, r_info, r_addend in _RELA.iter_unpack(self._whole_entries(section, _RELA)):
                kind = r_info & 0xFFFFFFFF
                if kind == _R_X86_64_RELATIVE or (kind == _R_X86_64_64 and (r_info >> 32) == 0):
                    values[r_offset] = r_addend
                elif kind == _R_X86_64_64:
                    symbols = symbols if symbols is not None else self._dynamic_symbol_values(section)
                    values[r_offset] = symbols.get(r_info >> 32, 0) + r_addend
        return values

    def _dynamic_symbol_values(self, rela_section: Section) -> dict[int, int]:
        link = self._linked_section(rela_section)
        return {
            index: value
            for index, (_n, _i, _o, _s, value, _z) in enumerate(
                _SYMBOL.iter_unpack(self._whole_entries(link, _SYMBOL))
            )
        }

    # ---- symbols ------------------------------------------------------------------------------

    @property
    def has_symtab(self) -> bool:
        return ".symtab" in self._sections

    def find_symbols(self, names: set[str]) -> dict[str, ElfSymbol]:
        """Look up a few names in .symtab without building objects for every symbol."""
        symtab = self._sections.get(".symtab")
        if symtab is None:
            return {}
        strtab = self._linked_section(symtab)
        strings = self._map[strtab["sh_offset"] : strtab["sh_offset"] + strtab["sh_size"]]
        # Find each wanted name's string-table offset; a symbol matches by offset. A name may
        # occur more than once in the string table, so collect every occurrence.
        wanted_offsets: dict[int, str] = {}
        for name in names:
            needle = b"\x00" + name.encode() + b"\x00"
            position = strings.find(needle)
            while position >= 0:
                wanted_offsets[position + 1] = name
                position = strings.find(needle, position + 1)
        found: dict[str, ElfSymbol] = {}
        for st_name, st_info, _other, _shndx, value, sym_size in _SYMBOL.iter_unpack(
            self._whole_entries(symtab, _SYMBOL)
        ):
            name = wanted_offsets.get(st_name)
            if name is not None and name not in found:
                found[name] = ElfSymbol(name, value, sym_size, is_function=(st_info & 0xF) == 2)
        return found

    def iter_function_symbols(self) -> list[ElfSymbol]:
        """Every STT_FUNC symbol (used for address-to-name maps, not on the inspect path)."""
        symtab = self._sections.get(".symtab")
        if symtab is None:
            return []
        strtab = self._linked_section(symtab)
        strings = self._map[strtab["sh_offset"] : strtab["sh_offset"] + strtab["sh_size"]]
        result = []
        for st_name, st_info, _other, _shndx, value, sym_size in _SYMBOL.iter_unpack(
            self._whole_entries(symtab, _SYMBOL)
        ):
            if st_info & 0xF == 2 and value:
                end = strings.find(b"\x00", st_name)
                result.append(ElfSymbol(strings[st_name:end].decode(errors="replace"), value, sym_size, True))
        return result

    # ---- identity -----------------------------------------------------------------------------

    @cached_property
    def build_id(self) -> str | None:
        """The GNU build id (hex), else the Go build id, else None."""
        for name in (".note.gnu.build-id", ".note.go.buildid"):
            data = self.section_bytes(name)
            if not data or len(data) < 12:
                continue
            namesz, descsz, _kind = struct.unpack_from("<III", data)
            desc_start = 12 + ((namesz + 3) & ~3)
            desc = data[desc_start : desc_start + descsz]
            return desc.hex() if name == ".note.gnu.build-id" else desc.decode(errors="replace")
        return None
