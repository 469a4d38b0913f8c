"""A parser for Go's `.gopclntab`, the function table every Go binary keeps even when stripped.

Layouts (runtime/symtab.go, internal/abi/symtab.go of each release):
  magic 0xfffffffa  Go 1.16-1.17  header: nfunc, nfiles, then 5 offsets; ftab of (entry, funcoff) uintptrs
  magic 0xfffffff0  Go 1.18-1.19  header adds textStart; ftab of (entryoff, funcoff) uint32s
  magic 0xfffffff1  Go 1.20+      same layout as 1.18 (new funcID values); from Go 1.26 the
                                  textStart word is no longer written (0), so entry offsets must be
                                  based on the module data's `text`, which the caller passes in.
Only 8-byte pointers and 1-byte instruction quanta (amd64) are accepted by the rest of mcalltrace,
but the parser follows the header's own sizes.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property

MAGIC_GO116 = 0xFFFFFFFA
MAGIC_GO118 = 0xFFFFFFF0
MAGIC_GO120 = 0xFFFFFFF1
MAGIC_GO12 = 0xFFFFFFFB

# The runtime's indices of the inline tables (runtime/symtab.go: _PCDATA_InlTreeIndex,
# _FUNCDATA_InlTree), the same in every release since Go 1.12.
PCDATA_INL_TREE_INDEX = 2
FUNCDATA_INL_TREE = 3
NO_FUNCDATA = 0xFFFFFFFF
MAX_INLINE_DEPTH = 32  # deeper than the compiler inlines

MAGIC_VERSIONS = {
    MAGIC_GO12: "1.2-1.15",
    MAGIC_GO116: "1.16-1.17",
    MAGIC_GO118: "1.18-1.19",
    MAGIC_GO120: "1.20+",
}


class PclntabError(ValueError):
    """The table is not one this parser reads, or it is damaged: an offset, count or varint in it
    points past the table. Raised by the constructor and, for what is checked lazily (names and
    pc tables of single functions), by the lookups; callers turn it into UnsupportedTarget."""


# The longest uvarint a 64-bit value needs; anything longer is damage, not a number.
_MAX_UVARINT_BYTES = 10


@dataclass(frozen=True)
class PclnFunction:
    name: str
    entry: int  # absolute link-time address
    size: int  # bytes of code, from the function's own pc tables (excludes alignment padding)


def _uvarint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(_MAX_UVARINT_BYTES):
        if pos >= len(data):
            raise PclntabError("a pc table runs past the end of the pclntab")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise PclntabError("a pc table holds a varint longer than 64 bits")


class Pclntab:
    """The function table of one Go module.

    `data` holds the table from its header on; `text_base` is the module's `text` address (from
    runtime.firstmoduledata), which entry offsets are relative to from Go 1.18 on.
    """

    def __init__(self, data: bytes | memoryview, text_base: int | None = None) -> None:
        # One copy up front: bytes.find is what makes name lookups fast.
        self.data = bytes(data)
        if len(self.data) < 8:
            raise PclntabError("pclntab too short")
        self.magic, pad1, pad2, self.min_lc, self.ptr_size = struct.unpack_from("<IBBBB", self.data)
        if self.magic not in MAGIC_VERSIONS:
            raise PclntabError(f"unknown pclntab magic {self.magic:#x}")
        if pad1 or pad2:
            raise PclntabError("the pclntab header's padding bytes are not zero")
        if self.magic == MAGIC_GO12:
            raise PclntabError("pclntab of Go 1.2-1.15 is not supported")
        if self.ptr_size != 8 or self.min_lc != 1:
            raise PclntabError(f"pclntab for pointer size {self.ptr_size}, quantum {self.min_lc}")
        # Go 1.16-1.17 headers have 7 words after the magic, later ones 8 (textStart added).
        words = 7 if self.magic == MAGIC_GO116 else 8
        if len(self.data) < 8 + 8 * words:
            raise PclntabError("the pclntab header is truncated")
        fields = struct.unpack_from(f"<{words}Q", self.data, 8)
        self.nfunc = fields[0]
        if self.magic == MAGIC_GO116:
            self.header_text_start = 0
            (
                self.funcname_offset,
                self.cu_offset,
                self.filetab_offset,
                self.pctab_offset,
                self.pcln_offset,
            ) = fields[2:7]
        else:
            self.header_text_start = fields[2]
            (
                self.funcname_offset,
                self.cu_offset,
                self.filetab_offset,
                self.pctab_offset,
                self.pcln_offset,
            ) = fields[3:8]
        if text_base is None:
            text_base = self.header_text_start
        self.text_base = text_base
        # The linker lays the tables out in this order after the header; any other order, or an
        # offset past the end, means the header is damaged, and every later read would go astray.
        offsets = (
            8 + 8 * words,
            self.funcname_offset,
            self.cu_offset,
            self.filetab_offset,
            self.pctab_offset,
            self.pcln_offset,
        )
        if any(map(operator.gt, offsets, offsets[1:])) or self.pcln_offset >= len(self.data):
            raise PclntabError("the pclntab header's table offsets are out of order or past its section")
        # nfunc sizes the function table that is unpacked in one go: it must fit in what is left
        # of the section, which also bounds the allocation whatever the header claims.
        room = (len(self.data) - self.pcln_offset) // self._ftab_entry_size
        if self.nfunc <= 0 or self.nfunc + 1 > room:
            raise PclntabError("the pclntab's function table runs past its section")

    @property
    def version_range(self) -> str:
        return MAGIC_VERSIONS[self.magic]

    @property
    def _ftab_entry_size(self) -> int:
        return 16 if self.magic == MAGIC_GO116 else 8

    @cached_property
    def _ftab(self) -> list[tuple[int, int]]:
        """(entry offset or address, funcoff) for nfunc+1 entries; the last marks the end of text.

        Checked once here so that every later lookup may index the table and the function records
        it points at without bounds checks of its own: entries ascend (lookups bisect them) and
        every function record's fixed fields lie inside the section.
        """
        count = self.nfunc + 1  # fits: checked against the section in __init__
        start = self.pcln_offset
        if self.magic == MAGIC_GO116:
            raw = struct.unpack_from(f"<{2 * count}Q", self.data, start)
        else:
            raw = struct.unpack_from(f"<{2 * count}I", self.data, start)
        entries, funcoffs = raw[0::2], raw[1::2]
        if any(map(operator.gt, entries, entries[1:])):
            raise PclntabError("the pclntab's function table is not sorted by address")
        # The last entry is the end-of-text sentinel; its funcoff points at no record.
        if max(funcoffs[: self.nfunc]) > len(self.data) - self.pcln_offset - self._record_prefix:
            raise PclntabError("a pclntab function record lies past its section")
        return list(zip(entries, funcoffs, strict=True))

    @property
    def _record_prefix(self) -> int:
        """Bytes of a function record read here: entry, nameOff, args, deferreturn, pcsp."""
        return 24 if self.magic == MAGIC_GO116 else 20

    def _entry_address(self, raw_entry: int) -> int:
        return raw_entry if self.magic == MAGIC_GO116 else self.text_base + raw_entry

    def _name_offset(self, funcoff: int) -> int:
        # _func starts with entry (uintptr before 1.18, uint32 entryOff after) then nameOff int32.
        position = self.pcln_offset + funcoff + (8 if self.magic == MAGIC_GO116 else 4)
        return struct.unpack_from("<i", self.data, position)[0]

    def _pcsp_offset(self, funcoff: int) -> int:
        # entry, nameOff, args, deferreturn, then pcsp.
        position = self.pcln_offset + funcoff + (20 if self.magic == MAGIC_GO116 else 16)
        return struct.unpack_from("<I", self.data, position)[0]

    def _name_at(self, name_offset: int) -> str:
        start = self.funcname_offset + name_offset
        # A name lies in funcnametab, which ends where cutab begins, and is NUL-terminated there.
        end = self.data.find(b"\x00", start, self.cu_offset) if name_offset >= 0 else -1
        if end < 0:
            raise PclntabError("a pclntab function name lies outside the name table")
        return self.data[start:end].decode(errors="replace")

    def _code_size(self, funcoff: int, fallback: int) -> int:
        """The function's code size: the sum of pc deltas in its pcsp table.

        The linker sizes each function's symbol by its code, while the gap to the next ftab
        entry also holds alignment padding; the pc-value tables cover the code exactly.
        """
        pcsp = self._pcsp_offset(funcoff)
        if pcsp == 0:
            return fallback
        table = self.data
        pos = self.pctab_offset + pcsp
        if pos >= self.pcln_offset:  # pc tables live in pctab, which ends where the ftab begins
            raise PclntabError("a function's pc table lies outside the pclntab's pctab")
        pc = 0
        first = True
        # Each step consumes at least two bytes, so this ends at the table's end at the latest.
        while True:
            value_delta, pos = _uvarint(table, pos)
            if value_delta == 0 and not first:
                break
            first = False
            pc_delta, pos = _uvarint(table, pos)
            pc += pc_delta * self.min_lc
            # The code cannot outgrow the gap to the next function (the gap adds only padding);
            # a larger sum is damage and would size reads of the function's code.
            if pc > fallback:
                raise PclntabError("a function's pc table covers more than the function")
        return pc or fallback

    def __len__(self) -> int:
        return self.nfunc

    def __iter__(self) -> Iterator[PclnFunction]:
        ftab = self._ftab
        for index in range(self.nfunc):
            raw_entry, funcoff = ftab[index]
            gap = ftab[index + 1][0] - raw_entry
            yield PclnFunction(
                name=self._name_at(self._name_offset(funcoff)),
                entry=self._entry_address(raw_entry),
                size=self._code_size(funcoff, gap),
            )

    def spans(self) -> Iterator[tuple[str, int, int]]:
        """(name, entry, next entry) of every function: the address range a PC in it can have,
        alignment padding included. Cheaper than iterating: no pc tables are decoded."""
        ftab = self._ftab
        for index in range(self.nfunc):
            raw_entry, funcoff = ftab[index]
            yield (
                self._name_at(self._name_offset(funcoff)),
                self._entry_address(raw_entry),
                self._entry_address(ftab[index + 1][0]),
            )

    @property
    def end_of_text(self) -> int:
        return self._entry_address(self._ftab[self.nfunc][0])

    def find(self, names: set[str]) -> dict[str, PclnFunction]:
        """Look up functions by exact name without decoding every name in the table.

        Each wanted name is located in funcnametab first; then only the name offsets in the
        function records are compared, which is a handful of integer unpacks per function.
        """
        names_table = self.data[self.funcname_offset : self.cu_offset]
        wanted: dict[int, str] = {}
        for name in names:
            needle = name.encode() + b"\x00"
            if names_table.startswith(needle):
                wanted[0] = name
            needle = b"\x00" + needle
            position = names_table.find(needle)
            while position >= 0:
                wanted[position + 1] = name
                position = names_table.find(needle, position + 1)
        found: dict[str, PclnFunction] = {}
        if not wanted:
            return found
        ftab = self._ftab
        name_field = 8 if self.magic == MAGIC_GO116 else 4
        base = self.pcln_offset + name_field
        unpack = struct.Struct("<i").unpack_from
        data = self.data
        for index in range(self.nfunc):
            raw_entry, funcoff = ftab[index]
            name = wanted.get(unpack(data, base + funcoff)[0])
            if name is not None and name not in found:
                gap = ftab[index + 1][0] - raw_entry
                found[name] = PclnFunction(
                    name, self._entry_address(raw_entry), self._code_size(funcoff, gap)
                )
                if len(found) == len(names):
                    break
        return found

    # ---- file:line -------------------------------------------------------------------------------

    def _func_u32(self, funcoff: int, field_index: int) -> int:
        """A uint32 field of a function record, counted after its entry (nameOff is 0, args 1,
        deferreturn 2, pcsp 3, pcfile 4, pcln 5, npcdata 6, cuOffset 7): the same order in every
        supported layout, after an entry of 8 bytes (Go 1.16-1.17) or 4 (1.18+)."""
        position = self.pcln_offset + funcoff + (8 if self.magic == MAGIC_GO116 else 4) + 4 * field_index
        if position + 4 > len(self.data):
            raise PclntabError("a pclntab function record lies past its section")
        return struct.unpack_from("<I", self.data, position)[0]

    def _pc_value(self, table_offset: int, entry: int, target: int) -> int | None:
        """The value a pc-value table (pcfile, pcln) gives `target`, as runtime.pcvalue reads it:
        zig-zag value deltas from -1, each followed by a pc delta; None if the table does not
        cover `target`."""
        if table_offset == 0:
            return None
        pos = self.pctab_offset + table_offset
        if pos >= self.pcln_offset:
            raise PclntabError("a function's pc table lies outside the pclntab's pctab")
        value, pc, first = -1, entry, True
        while True:
            delta, pos = _uvarint(self.data, pos)
            if delta == 0 and not first:
                return None
            first = False
            value += -((delta + 1) >> 1) if delta & 1 else delta >> 1
            step, pos = _uvarint(self.data, pos)
            pc += step * self.min_lc
            if target < pc:
                return value

    def _file_name(self, cu_offset: int, file_index: int) -> str | None:
        position = self.cu_offset + 4 * (cu_offset + file_index)
        if file_index < 0 or position + 4 > self.filetab_offset:
            raise PclntabError("a function's file index lies outside the pclntab's cutab")
        name_offset = struct.unpack_from("<I", self.data, position)[0]
        if name_offset == 0xFFFFFFFF:
            return None
        start = self.filetab_offset + name_offset
        end = self.data.find(b"\x00", start, self.pctab_offset)
        if end < 0:
            raise PclntabError("a file name lies outside the pclntab's file table")
        return self.data[start:end].decode(errors="replace")

    def line_at(self, pc: int) -> tuple[str, str, int] | None:
        """(function, file, line) of the instruction at `pc`, from the function's pcfile and pcln
        tables, or None outside this module's text or where the tables say nothing. For a return
        address (a goroutine's gopc, a frame's saved PC) pass the address minus one, as the
        runtime's tracebacks do, to get the line of the call."""
        from bisect import bisect_right

        entries = self.sorted_entries
        if not entries or pc < entries[0] or pc >= self.end_of_text:
            return None
        index = bisect_right(entries, pc) - 1
        funcoff = self._ftab[index][1]
        entry = entries[index]
        file_index = self._pc_value(self._func_u32(funcoff, 4), entry, pc)
        line = self._pc_value(self._func_u32(funcoff, 5), entry, pc)
        if file_index is None or line is None:
            return None
        file = self._file_name(self._func_u32(funcoff, 7), file_index)
        if file is None:
            return None
        return self._name_at(self._name_offset(funcoff)), file, line

    # ---- inlining ---------------------------------------------------------------------------------

    def _funcdata_tables(self, funcoff: int) -> tuple[int, int]:
        """(PCDATA_InlTreeIndex's table offset, FUNCDATA_InlTree's offset from go:func.*), 0 and
        None-like 0xFFFFFFFF where the function has none. Go 1.18+ only: after the record's u32
        fields (nine from 1.20, which added startLine; eight before) come funcID, flag, a pad
        byte and nfuncdata, then npcdata u32 pcdata offsets and nfuncdata u32 funcdata offsets."""
        fields = 9 if self.magic == MAGIC_GO120 else 8
        base = self.pcln_offset + funcoff + 4 + 4 * fields
        npcdata = self._func_u32(funcoff, 6)
        if base + 4 + 4 * npcdata > len(self.data):
            raise PclntabError("a pclntab function record lies past its section")
        nfuncdata = self.data[base + 3]
        pcdata = base + 4
        inline_index = (
            struct.unpack_from("<I", self.data, pcdata + 4 * PCDATA_INL_TREE_INDEX)[0]
            if npcdata > PCDATA_INL_TREE_INDEX
            else 0
        )
        funcdata = pcdata + 4 * npcdata
        inline_tree = NO_FUNCDATA
        if nfuncdata > FUNCDATA_INL_TREE and funcdata + 4 * nfuncdata <= len(self.data):
            inline_tree = struct.unpack_from("<I", self.data, funcdata + 4 * FUNCDATA_INL_TREE)[0]
        return inline_index, inline_tree

    def frames_at(
        self, pc: int, read_gofunc: Callable[[int, int], bytes] | None
    ) -> list[tuple[str, str, int]]:
        """The source frames at `pc`, innermost first: the functions inlined there, each with its
        own line, then the function the code belongs to (as the runtime's traceback expands
        them). `read_gofunc(offset, size)` reads the binary's go:func.* data (where inline trees
        live); without it, or where the tables say nothing, the one frame of line_at. For a
        return address pass the address minus one."""
        from bisect import bisect_right

        outer = self.line_at(pc)
        if outer is None or read_gofunc is None or self.magic not in (MAGIC_GO118, MAGIC_GO120):
            return [outer] if outer else []
        entries = self.sorted_entries
        index = bisect_right(entries, pc) - 1
        funcoff = self._ftab[index][1]
        entry = entries[index]
        inline_index_table, inline_tree = self._funcdata_tables(funcoff)
        if not inline_index_table or inline_tree == NO_FUNCDATA:
            return [outer]
        size = 16 if self.magic == MAGIC_GO120 else 20
        frames: list[tuple[str, str, int]] = []
        at = pc
        for _ in range(MAX_INLINE_DEPTH):
            inline_index = self._pc_value(inline_index_table, entry, at)
            if inline_index is None or inline_index < 0:
                break
            record = read_gofunc(inline_tree + inline_index * size, size)
            if len(record) < size:
                break
            if self.magic == MAGIC_GO120:  # funcID u8, pad[3], nameOff i32, parentPc i32, startLine i32
                name_offset, parent_pc = struct.unpack_from("<ii", record, 4)
            else:  # parent i16, funcID u8, pad u8, file i32, line i32, func_ i32, parentPc i32
                name_offset, parent_pc = struct.unpack_from("<ii", record, 12)
            where = self.line_at(at)
            if where is None or not 0 <= parent_pc < self.end_of_text - entry:
                break
            frames.append((self._name_at(name_offset), where[1], where[2]))
            at = entry + parent_pc
        where = self.line_at(at)
        frames.append(where if where is not None else outer)
        return frames

    @cached_property
    def sorted_entries(self) -> list[int]:
        """Entry addresses in table order (the table is sorted by entry), for pc lookups."""
        return [self._entry_address(raw) for raw, _ in self._ftab[: self.nfunc]]

    def function_at(self, pc: int) -> str | None:
        """The name of the function containing `pc`, or None outside this module's text."""
        from bisect import bisect_right

        entries = self.sorted_entries
        if not entries or pc < entries[0] or pc >= self.end_of_text:
            return None
        index = bisect_right(entries, pc) - 1
        return self._name_at(self._name_offset(self._ftab[index][1]))
