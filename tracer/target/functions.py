"""Where the runtime's functions are: from .symtab when the binary has one, else from .gopclntab.

Names are canonical whatever the spelling in the binary: assembly functions carry an `.abi0`
suffix in .symtab but not in .gopclntab (`runtime.gogo.abi0` / `runtime.gogo`), and some
functions were renamed between releases (`findrunnable` became `findRunnable` in Go 1.19...).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property

from tracer.errors import UnsupportedTarget
from tracer.target.elfimage import ElfImage
from tracer.target.pclntab import MAGIC_VERSIONS, Pclntab, PclntabError

# Canonical name -> spellings seen across Go 1.16..1.27, most recent first.
ALIASES: dict[str, tuple[str, ...]] = {
    "runtime.findRunnable": ("runtime.findRunnable", "runtime.findrunnable"),
    "runtime.exitsyscall0": ("runtime.exitsyscall0", "runtime.exitsyscallNoP"),
}

# runtime.firstmoduledata: pcHeader, six slices (funcnametab, cutab, filetab, pctab, pclntable,
# ftab), findfunctab, minpc, maxpc, then text. The same prefix from Go 1.16 through 1.27.
_MODULEDATA_FUNCNAMETAB = 8
_MODULEDATA_TEXT = 8 + 6 * 24 + 3 * 8
# moduledata.gofunc (go:func.*, where inline trees live), after `rodata`, by release: Go 1.27
# (types, typedesclen, etypes, itaboffset, itabsize), 1.20-1.26 (covctrs added), 1.18-1.19.
# Each is checked (see gofunc_address): at the other releases' offsets lie lengths, not pointers.
_MODULEDATA_GOFUNC = (344, 320, 304)


def spellings(canonical: str) -> tuple[str, ...]:
    base = ALIASES.get(canonical, (canonical,))
    return tuple(name for spelling in base for name in (spelling, spelling + ".abi0"))


def canonical_name(name: str) -> str:
    # .gopclntab keeps the compiler's middle dot ("untracedG·6"), .symtab spells it ".".
    name = name.removesuffix(".abi0").replace("\u00b7", ".")
    for canonical, names in ALIASES.items():
        if name in names:
            return canonical
    return name


@dataclass(frozen=True)
class Function:
    name: str  # canonical
    symbol: str  # as spelled in the binary
    address: int  # link-time
    size: int


class GoFunctions:
    """Function lookup over one binary, choosing .symtab or .gopclntab."""

    def __init__(self, image: ElfImage) -> None:
        self.image = image

    @property
    def source(self) -> str:
        return "symtab" if self.image.has_symtab else "pclntab"

    # ---- pclntab and module data --------------------------------------------------------------

    @cached_property
    def pclntab_address(self) -> int:
        for name in (".gopclntab", ".data.rel.ro.gopclntab"):
            section = self.image.section(name)
            if section is not None and section.size:
                return section.vaddr
        # Section headers gone or renamed: look for a plausible header in read-only segments.
        for segment in self.image.load_segments:
            if segment.flags & 0x1:  # skip executable segments
                continue
            data = self.image.file_view(segment.offset, segment.filesz).tobytes()
            for magic in (0xFFFFFFF1, 0xFFFFFFF0, 0xFFFFFFFA):
                needle = struct.pack("<IBBBB", magic, 0, 0, 1, 8)
                position = data.find(needle)
                while position >= 0:
                    if position % 8 == 0:
                        try:
                            Pclntab(data[position:])
                        except PclntabError:
                            pass
                        else:
                            return segment.vaddr + position
                    position = data.find(needle, position + 1)
        raise UnsupportedTarget(f"{self.image.path}: not a Go program (no .gopclntab)")

    @cached_property
    def moduledata_address(self) -> int | None:
        """runtime.firstmoduledata, from its symbol or by finding the word that points at pclntab."""
        symbol = self.image.find_symbols({"runtime.firstmoduledata"}).get("runtime.firstmoduledata")
        if symbol is not None:
            return symbol.value
        header = self._pclntab_header_based
        target = self.pclntab_address
        funcnametab = target + header.funcname_offset

        def plausible(candidate: int) -> bool:
            try:
                return self.image.read_pointer(candidate + _MODULEDATA_FUNCNAMETAB) == funcnametab
            except ValueError:
                return False

        if self.image.is_pie:
            for offset, value in self.image.relocations.items():
                if value == target and plausible(offset):
                    return offset
            return None
        needle = struct.pack("<Q", target)
        for segment in self.image.load_segments:
            if not segment.flags & 0x2:  # module data lives in writable data
                continue
            data = self.image.file_view(segment.offset, segment.filesz).tobytes()
            position = data.find(needle)
            while position >= 0:
                if position % 8 == 0 and plausible(segment.vaddr + position):
                    return segment.vaddr + position
                position = data.find(needle, position + 1)
        return None

    @cached_property
    def gofunc_address(self) -> int | None:
        """moduledata.gofunc: go:func.*, the base of funcdata offsets (inline trees) since Go
        1.18; None where the module data or a plausible gofunc cannot be found. Plausible: it and
        the `rodata` word before it point into the same non-executable segment, rodata first."""
        moduledata = self.moduledata_address
        if moduledata is None:
            return None
        for offset in _MODULEDATA_GOFUNC:
            try:
                rodata = self.image.read_pointer(moduledata + offset - 8)
                gofunc = self.image.read_pointer(moduledata + offset)
            except ValueError:
                continue
            for segment in self.image.load_segments:
                inside = segment.contains(rodata) and segment.contains(gofunc)
                if inside and not segment.flags & 0x1 and rodata <= gofunc:
                    return gofunc
        return None

    def read_gofunc(self, offset: int, size: int) -> bytes:
        """Bytes of go:func.* data (b"" where there is none to read)."""
        base = self.gofunc_address
        if base is None:
            return b""
        try:
            return self.image.read(base + offset, size)
        except ValueError:
            return b""

    @cached_property
    def text_base(self) -> int:
        """The module's `text` (runtime.text), the base of pclntab entry offsets since Go 1.18.

        Not the pclntab header's textStart alone: in cgo binaries C code precedes the Go text, and
        from Go 1.26 the header no longer records it.
        """
        moduledata = self.moduledata_address
        if moduledata is not None:
            try:
                text = self.image.read_pointer(moduledata + _MODULEDATA_TEXT)
            except ValueError:
                # runtime.firstmoduledata's symbol points outside every segment: a damaged
                # .symtab; the other sources below may still know the text base.
                text = 0
            if text:
                return text
        symbol = self.image.find_symbols({"runtime.text"}).get("runtime.text")
        if symbol is not None:
            return symbol.value
        header_start = self._pclntab_header_based.header_text_start
        if header_start:
            return header_start
        raise UnsupportedTarget(f"{self.image.path}: cannot find the Go text base (module data not found)")

    def _pclntab_bytes(self) -> bytes:
        for name in (".gopclntab", ".data.rel.ro.gopclntab"):
            data = self.image.section_bytes(name)
            if data:
                return data
        address = self.pclntab_address
        for segment in self.image.load_segments:
            if segment.vaddr <= address < segment.vaddr + segment.filesz:
                start = address - segment.vaddr
                return self.image.file_view(segment.offset + start, segment.filesz - start).tobytes()
        raise UnsupportedTarget(f"{self.image.path}: .gopclntab is not in the file")

    @cached_property
    def _pclntab_header_based(self) -> Pclntab:
        try:
            return Pclntab(self._pclntab_bytes())
        except PclntabError as err:
            raise self.image.corrupt(str(err)) from None

    @cached_property
    def pclntab(self) -> Pclntab:
        header = self._pclntab_header_based
        return Pclntab(header.data, text_base=self.text_base)

    @property
    def pclntab_magic(self) -> int:
        return self._pclntab_header_based.magic

    @property
    def pclntab_version_range(self) -> str:
        return MAGIC_VERSIONS[self.pclntab_magic]

    # ---- lookups ------------------------------------------------------------------------------

    def find(self, canonical_names: list[str]) -> dict[str, Function]:
        """The functions found, each checked to lie in the file's code: callers read, disassemble
        and place probes on [address, address + size) without checks of their own."""
        wanted = {spelling: name for name in canonical_names for spelling in spellings(name)}
        found: dict[str, Function] = {}
        if self.image.has_symtab:
            for spelling, symbol in self.image.find_symbols(set(wanted)).items():
                if symbol.is_function and symbol.value:
                    found.setdefault(
                        wanted[spelling], Function(wanted[spelling], spelling, symbol.value, symbol.size)
                    )
        else:
            try:
                by_spelling = self.pclntab.find(set(wanted))
            except PclntabError as err:
                raise self.image.corrupt(str(err)) from None
            for spelling, function in by_spelling.items():
                found.setdefault(
                    wanted[spelling], Function(wanted[spelling], spelling, function.entry, function.size)
                )
        for function in found.values():
            self._check_code(function)
        return found

    def _check_code(self, function: Function) -> None:
        # The address and size come from the file (.symtab or .gopclntab); a damaged one would
        # send reads outside the file or size them by garbage.
        for segment in self.image.load_segments:
            if (
                segment.flags & 0x1  # executable
                and segment.vaddr <= function.address
                and function.address + function.size <= segment.vaddr + segment.filesz
            ):
                if function.size <= 0:
                    raise self.image.corrupt(f"{function.symbol} at {function.address:#x} has no code")
                return
        raise self.image.corrupt(
            f"{function.symbol} at {function.address:#x} ({function.size} bytes) is not in the file's code"
        )

    def find_variables(self, names: list[str]) -> dict[str, int]:
        """Addresses of runtime variables (symtab only: .gopclntab lists functions, not data)."""
        return {name: symbol.value for name, symbol in self.image.find_symbols(set(names)).items()}
