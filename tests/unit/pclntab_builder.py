"""Builds synthetic .gopclntab tables in each layout, for parser tests that need no Go toolchain."""

from __future__ import annotations

import struct

from tracer.target.pclntab import MAGIC_GO116


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def build_pclntab(
    magic: int,
    functions: list[tuple[str, int, int]],
    text_start: int,
    header_text_start: int | None = None,
) -> bytes:
    """functions: (name, offset from text start, code size), sorted by offset.

    The last function's end (offset + 32) marks the end of text. header_text_start is what the
    header records (Go 1.26 and later write 0); it defaults to text_start.
    """
    old_layout = magic == MAGIC_GO116
    header_size = 8 + (7 if old_layout else 8) * 8
    names = b""
    name_offsets = []
    for name, _, _ in functions:
        name_offsets.append(len(names))
        names += name.encode() + b"\x00"
    cutab = b"\x00" * 4
    filetab = b"\x00"
    pctab = b"\x00"  # offset 0 means "no table", so tables start at 1
    pcsp_offsets = []
    for _, _, size in functions:
        pcsp_offsets.append(len(pctab))
        pctab += _uvarint(0) + _uvarint(size) + b"\x00"  # value 0 over the whole function, then end
    funcname_offset = header_size
    cu_offset = funcname_offset + len(names)
    filetab_offset = cu_offset + len(cutab)
    pctab_offset = filetab_offset + len(filetab)
    pcln_offset = pctab_offset + len(pctab)
    pcln_offset += -pcln_offset % 8

    entry_size = 16 if old_layout else 8
    ftab_size = entry_size * (len(functions) + 1)
    records = b""
    ftab = b""
    for index, (_, offset, _) in enumerate(functions):
        funcoff = ftab_size + len(records)
        if old_layout:
            ftab += struct.pack("<QQ", text_start + offset, funcoff)
            records += struct.pack(
                "<QiiII", text_start + offset, name_offsets[index], 0, 0, pcsp_offsets[index]
            )
        else:
            ftab += struct.pack("<II", offset, funcoff)
            records += struct.pack("<IiiII", offset, name_offsets[index], 0, 0, pcsp_offsets[index])
        records += b"\x00" * 24  # pcfile, pcln, npcdata, cuOffset, startLine, funcID/flag/nfuncdata
    end = functions[-1][1] + 32
    ftab += struct.pack("<QQ", text_start + end, 0) if old_layout else struct.pack("<II", end, 0)

    if header_text_start is None:
        header_text_start = text_start
    header = struct.pack("<IBBBB", magic, 0, 0, 1, 8)
    if old_layout:
        header += struct.pack(
            "<7Q", len(functions), 1, funcname_offset, cu_offset, filetab_offset, pctab_offset, pcln_offset
        )
    else:
        header += struct.pack(
            "<8Q",
            len(functions),
            1,
            header_text_start,
            funcname_offset,
            cu_offset,
            filetab_offset,
            pctab_offset,
            pcln_offset,
        )
    body = header + names + cutab + filetab + pctab
    body += b"\x00" * (pcln_offset - len(body))
    return body + ftab + records
