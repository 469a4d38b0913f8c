"""Struct field offsets from the binary's own DWARF.

Go binaries carry tens of thousands of DIEs; walking them through pyelftools takes seconds. The
linker writes type names inline (DW_FORM_string), so each wanted struct is found by searching the
decompressed .debug_info for its name and parsing just that DIE and its members.
"""

from __future__ import annotations

import bisect
import struct
import zlib
from typing import Any

from elftools.common.exceptions import DWARFError, ELFError

from tracer.target.elfimage import ElfImage
from tracer.target.fields import FIELDS, STRUCTS


class DwarfUnavailable(Exception):
    pass


# What pyelftools raises on malformed DWARF besides DWARFError and ELFError: it asserts header
# fields (address size, format), inflates compressed sections, and follows offsets and counts
# read from the data into its tables and streams. DWARF is one source of offsets among two, so
# damage there falls back to the shipped table (with a note) rather than failing inspect.
_DWARF_PARSE_ERRORS = (
    DWARFError,
    ELFError,
    AssertionError,
    ValueError,
    IndexError,
    KeyError,
    struct.error,
    zlib.error,
    OverflowError,
)


def _struct_dies(dwarf: Any, names: list[str]) -> dict[str, Any]:
    """Locate structure DIEs by name with a byte search over .debug_info."""
    data: bytes = dwarf.debug_info_sec.stream.getvalue()
    cus = list(dwarf.iter_CUs())
    starts = [cu.cu_offset for cu in cus]
    found: dict[str, Any] = {}
    for name in names:
        needle = name.encode() + b"\x00"
        position = data.find(needle)
        while position >= 0 and name not in found:
            cu = cus[bisect.bisect_right(starts, position) - 1]
            # The name is the first attribute, right after the ULEB128 abbreviation code.
            for back in (1, 2, 3):
                try:
                    die = cu.get_DIE_from_refaddr(position - back)
                except (DWARFError, ELFError, KeyError, IndexError, ValueError, AssertionError):
                    continue
                attribute = die.attributes.get("DW_AT_name")
                if (
                    die.tag == "DW_TAG_structure_type"
                    and attribute is not None
                    and attribute.value == name.encode()
                    and die.has_children
                ):
                    found[name] = die
                    break
            position = data.find(needle, position + 1)
    return found


def _members(die: Any) -> dict[str, Any]:
    return {
        child.attributes["DW_AT_name"].value.decode(): child
        for child in die.iter_children()
        if child.tag == "DW_TAG_member" and "DW_AT_name" in child.attributes
    }


def _resolve(struct_die: Any, path: str) -> int | None:
    offset = 0
    die = struct_die
    parts = path.split(".")
    for index, part in enumerate(parts):
        member = _members(die).get(part)
        if member is None:
            return None
        location = member.attributes.get("DW_AT_data_member_location")
        if location is None or not isinstance(location.value, int):
            return None
        offset += location.value
        if index + 1 < len(parts):
            die = member.get_DIE_from_attribute("DW_AT_type")
            while die.tag == "DW_TAG_typedef":
                die = die.get_DIE_from_attribute("DW_AT_type")
    return offset


def read_dwarf_offsets(image: ElfImage) -> dict[str, int]:
    """Offsets for every key in FIELDS that the binary's DWARF describes.

    Raises DwarfUnavailable when the binary has no usable DWARF (stripped with -w, or damaged).
    """
    if not image.has_section(".debug_info") and not image.has_section(".zdebug_info"):
        raise DwarfUnavailable("no DWARF")
    for name in image.section_names:
        if name.startswith((".debug_", ".zdebug_")) or name == ".eh_frame":
            info = image.section(name)
            # pyelftools hands a NOBITS section back as sh_size zero bytes: a size from the file.
            if info is not None and info.nobits and info.size:
                raise DwarfUnavailable(f"section {name} has no contents")
    try:
        dwarf = image.elf.get_dwarf_info(relocate_dwarf_sections=False)
        dies = _struct_dies(dwarf, STRUCTS)
        offsets: dict[str, int] = {}
        for spec in FIELDS:
            die = dies.get(spec.struct)
            if die is None:
                continue
            for path in spec.paths:
                offset = _resolve(die, path)
                if offset is not None:
                    offsets[spec.key] = offset
                    break
    except _DWARF_PARSE_ERRORS as err:
        raise DwarfUnavailable(" ".join(f"{type(err).__name__}: {err}".split())) from None
    if not offsets:
        raise DwarfUnavailable("DWARF has no runtime struct types")
    return offsets
