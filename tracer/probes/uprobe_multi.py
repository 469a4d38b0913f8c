"""uprobe_multi links (Linux 6.6+): many uprobes in one binary as one BPF link.

One link per probe group, holding all of the group's offsets, each with a cookie that names its
site for the group's single program. Creating it inserts every breakpoint at once; closing it
removes them all at once and then waits out an RCU grace period (25-50 ms here), where closing one
perf-event uprobe at a time costs about 100 ms per probe, serialized.
bcc 0.26 has no API for these links, so the bpf(BPF_LINK_CREATE) call is made directly; the
programs must be loaded with the BPF_TRACE_UPROBE_MULTI expected attach type.
"""

from __future__ import annotations

import ctypes
import errno
import os

BPF_LINK_CREATE = 28
BPF_TRACE_UPROBE_MULTI = 48
_SYS_BPF = 321  # x86-64
_ATTR_SIZE = 128
_libc = ctypes.CDLL(None, use_errno=True)


def create_link(
    program_fd: int, path: str, offsets: list[int], pid: int, cookies: list[int] | None = None
) -> int:
    """A link of uprobes at `offsets` of the file at `path`, for process `pid` only; `cookies`
    (one per offset) are what bpf_get_attach_cookie() returns at each.

    Raises OSError with the kernel's errno (EINVAL or ENOTSUPP where the kernel lacks support).
    """
    path_buffer = ctypes.create_string_buffer(path.encode())
    offset_array = (ctypes.c_uint64 * len(offsets))(*offsets)
    attr = (ctypes.c_uint8 * _ATTR_SIZE)()

    def put(offset: int, kind: type, value: int) -> None:
        ctypes.cast(ctypes.byref(attr, offset), ctypes.POINTER(kind))[0] = value

    # union bpf_attr.link_create: prog_fd, target_fd, attach_type, flags, then uprobe_multi:
    # path, offsets, ref_ctr_offsets, cookies (u64 each), cnt, flags, pid (u32 each).
    put(0, ctypes.c_uint32, program_fd)
    put(8, ctypes.c_uint32, BPF_TRACE_UPROBE_MULTI)
    put(16, ctypes.c_uint64, ctypes.addressof(path_buffer))
    put(24, ctypes.c_uint64, ctypes.addressof(offset_array))
    if cookies is not None:
        cookie_array = (ctypes.c_uint64 * len(cookies))(*cookies)
        put(40, ctypes.c_uint64, ctypes.addressof(cookie_array))
    put(48, ctypes.c_uint32, len(offsets))
    put(56, ctypes.c_uint32, pid)
    fd = _libc.syscall(_SYS_BPF, BPF_LINK_CREATE, attr, _ATTR_SIZE)
    if fd < 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))
    return fd


BPF_PROG_LOAD = 5
_BPF_PROG_TYPE_KPROBE = 2
_links_supported: bool | None = None


def links_supported() -> bool:
    """Whether this kernel makes uprobe_multi links (6.6+, or a backport), probed as libbpf does:
    a trivial program loaded for them, then a link on "/", which a kernel that has them refuses
    with EBADF (not a regular file) and one that lacks them with EINVAL. Needs root; cached."""
    global _links_supported
    if _links_supported is None:
        _links_supported = _probe_links()
    return _links_supported


def _probe_links() -> bool:
    # r0 = 0; exit
    instructions = (ctypes.c_uint64 * 2)(0x00000000000000B7, 0x0000000000000095)
    license_text = ctypes.create_string_buffer(b"GPL")
    attr = (ctypes.c_uint8 * _ATTR_SIZE)()

    def put(offset: int, kind: type, value: int) -> None:
        ctypes.cast(ctypes.byref(attr, offset), ctypes.POINTER(kind))[0] = value

    # union bpf_attr, BPF_PROG_LOAD: prog_type, insn_cnt, insns, license, ..., expected_attach_type
    put(0, ctypes.c_uint32, _BPF_PROG_TYPE_KPROBE)
    put(4, ctypes.c_uint32, 2)
    put(8, ctypes.c_uint64, ctypes.addressof(instructions))
    put(16, ctypes.c_uint64, ctypes.addressof(license_text))
    put(68, ctypes.c_uint32, BPF_TRACE_UPROBE_MULTI)
    program_fd = _libc.syscall(_SYS_BPF, BPF_PROG_LOAD, attr, _ATTR_SIZE)
    if program_fd < 0:
        return False  # the attach type is unknown, or no BPF at all
    try:
        os.close(create_link(program_fd, "/", [0], 0))  # made a link on "/": not to be trusted
    except OSError as err:
        return err.errno == errno.EBADF
    finally:
        os.close(program_fd)
    return False
