"""An ELF file opened once and read lazily: sections by name, memory by virtual address.

pyelftools parses the headers; bulk tables (symbols, relocations) are read with struct straight from
an mmap of the file, because walking tens of thousands of entries through pyelftools' per-entry
objects is what makes introspection of large Go binaries slow.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from functools import cached_property
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

from tracer.errors import NoTarget, UnsupportedTarget

_ELF_MAGIC = b"\x7fELF"
_R_X86_64_64 = 1
_R_X86_64_RELATIVE = 8
_SYMBOL = struct.Struct("<IBBHQQ")  # Elf64_Sym: name, info, other, shndx, value, size
_RELA = struct.Struct("<QQq")  # Elf64_Rela: offset, info, addend


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
            self.elf = ELFFile(self._file)
        except ELFError as err:
            self.close()
            raise UnsupportedTarget(f"{path}: corrupt ELF file ({err})") from None
        machine = self.elf.header["e_machine"]
        if machine != "EM_X86_64" or self.elf.elfclass != 64:
            self.close()
            raise UnsupportedTarget(
                f"{path}: architecture {machine.removeprefix('EM_')} is not supported "
                "(mcalltrace traces x86-64 Go programs)"
            )
        self._sections = {section.name: section for section in self.elf.iter_sections() if section.name}

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

    @cached_property
    def load_segments(self) -> tuple[LoadSegment, ...]:
        return tuple(
            LoadSegment(
                vaddr=seg["p_vaddr"],
                memsz=seg["p_memsz"],
                offset=seg["p_offset"],
                filesz=seg["p_filesz"],
                flags=seg["p_flags"],
            )
            for seg in self.elf.iter_segments()
            if seg["p_type"] == "PT_LOAD"
        )

    def has_section(self, name: str) -> bool:
        return name in self._sections

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
        )

    def section_bytes(self, name: str) -> bytes | None:
        """A section's contents (decompressed if need be), or None when absent or NOBITS."""
        section = self._sections.get(name)
        if section is None or section["sh_type"] == "SHT_NOBITS":
            return None
        if section["sh_flags"] & 0x800:
            return section.data()  # pyelftools inflates SHF_COMPRESSED sections
        start = section["sh_offset"]
        return self._map[start : start + section["sh_size"]]

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
        for section in self.elf.iter_sections():
            if section["sh_type"] != "SHT_RELA":
                continue
            start, size = section["sh_offset"], section["sh_size"]
            symbols = None
            for r_offset, r_info, r_addend in _RELA.iter_unpack(self._map[start : start + size]):
                kind = r_info & 0xFFFFFFFF
                if kind == _R_X86_64_RELATIVE or (kind == _R_X86_64_64 and (r_info >> 32) == 0):
                    values[r_offset] = r_addend
                elif kind == _R_X86_64_64:
                    symbols = symbols if symbols is not None else self._dynamic_symbol_values(section)
                    values[r_offset] = symbols.get(r_info >> 32, 0) + r_addend
        return values

    def _dynamic_symbol_values(self, rela_section: object) -> dict[int, int]:
        link = self.elf.get_section(rela_section["sh_link"])  # type: ignore[index]
        start, size = link["sh_offset"], link["sh_size"]
        return {
            index: value
            for index, (_n, _i, _o, _s, value, _z) in enumerate(
                _SYMBOL.iter_unpack(self._map[start : start + size])
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
        strtab = self.elf.get_section(symtab["sh_link"])
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
        start, size = symtab["sh_offset"], symtab["sh_size"]
        for st_name, st_info, _other, _shndx, value, sym_size in _SYMBOL.iter_unpack(
            self._map[start : start + size]
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
        strtab = self.elf.get_section(symtab["sh_link"])
        strings = self._map[strtab["sh_offset"] : strtab["sh_offset"] + strtab["sh_size"]]
        start, size = symtab["sh_offset"], symtab["sh_size"]
        result = []
        for st_name, st_info, _other, _shndx, value, sym_size in _SYMBOL.iter_unpack(
            self._map[start : start + size]
        ):
            if st_info & 0xF == 2 and value:
                end = strings.find(b"\x00", st_name)
                result.append(ElfSymbol(strings[st_name:end].decode(), value, sym_size, True))
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
