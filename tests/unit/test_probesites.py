from __future__ import annotations

import pytest

from tracer.target.probesites import choose_probe_site, is_emulated, register_family, ret_offsets

BASE = 0x401000
CMP_SP_STACKGUARD = bytes.fromhex("493b6610")  # cmp rsp, [r14+0x10]
JBE_REL8 = bytes.fromhex("7640")
PUSH_RBP = bytes.fromhex("55")
MOV_RBP_RSP = bytes.fromhex("4889e5")


def test_small_frame_prologue_probes_the_stack_check_branch() -> None:
    code = CMP_SP_STACKGUARD + JBE_REL8 + PUSH_RBP + MOV_RBP_RSP
    site = choose_probe_site(code, BASE, ("rax", "rbx"))
    assert (site.offset, site.instruction.split()[0], site.emulated) == (4, "jbe", True)
    assert site.stack_delta == 0


def test_large_frame_prologue_with_leaq() -> None:
    code = bytes.fromhex("4c8d6424e84d3b66100f8600100000") + PUSH_RBP
    site = choose_probe_site(code, BASE, ("rax",))
    assert (site.offset, site.instruction.split()[0], site.emulated) == (9, "jbe", True)


def test_entry_that_is_already_emulated() -> None:
    site = choose_probe_site(PUSH_RBP + MOV_RBP_RSP, BASE, ("rax",))
    assert (site.offset, site.emulated) == (0, True)


def test_mcall_like_assembly_reaches_jne_when_only_rax_matters() -> None:
    code = bytes.fromhex("4889c24889e3488b5b084c39f67505")
    site = choose_probe_site(code, BASE, ("rax",))
    assert (site.offset, site.instruction.split()[0]) == (13, "jne")


def test_argument_register_written_first_falls_back_to_entry() -> None:
    code = bytes.fromhex("4889c24889e37505")  # mov rdx, rax; mov rbx, rsp; jne
    site = choose_probe_site(code, BASE, ("rax", "rbx"))
    assert site.offset == 0 and not site.emulated
    assert "rbx is written at +3" in site.note


def test_32_bit_write_counts_as_a_write_of_the_register() -> None:
    code = bytes.fromhex("31db7505")  # xor ebx, ebx; jne
    site = choose_probe_site(code, BASE, ("rbx",))
    assert site.offset == 0 and "rbx" in site.note


def test_writing_r14_always_falls_back() -> None:
    code = bytes.fromhex("4989c6eb00")  # mov r14, rax; jmp
    assert choose_probe_site(code, BASE, ()).offset == 0


def test_stack_delta_is_tracked_through_sub_and_push() -> None:
    code = bytes.fromhex("4883ec184889c850")  # sub rsp,0x18; mov rax,rcx; push rax
    site = choose_probe_site(code, BASE, ("rbx",))
    assert (site.offset, site.stack_delta) == (7, -0x18)


def test_untrackable_stack_change_falls_back() -> None:
    code = bytes.fromhex("498b663850")  # mov rsp, [r14+0x38]; push rax
    site = choose_probe_site(code, BASE, ())
    assert site.offset == 0 and "SP" in site.note


def test_indirect_jump_ends_the_straight_line() -> None:
    code = bytes.fromhex("ffe355")  # jmp rbx; push rbp
    site = choose_probe_site(code, BASE, ())
    assert site.offset == 0 and not site.emulated


@pytest.mark.parametrize(
    ("hex_code", "emulated"),
    [
        ("55", True),  # push rbp
        ("4154", True),  # push r12
        ("4850", False),  # push rax with REX.W: the kernel does not emulate it
        ("90", True),  # nop
        ("0f1f00", False),  # multi-byte nop
        ("eb10", True),
        ("e910000000", True),
        ("e810000000", True),
        ("7505", True),
        ("0f8610000000", True),
        ("493b6610", False),  # cmp
        ("4c8d6424e8", False),  # lea
        ("c3", False),  # ret
        ("ffe3", False),  # indirect jmp
    ],
)
def test_emulated_instruction_classes(hex_code: str, emulated: bool) -> None:
    assert is_emulated(bytes.fromhex(hex_code)) is emulated


def test_ret_offsets_include_every_ret_and_survive_bad_bytes() -> None:
    code = bytes.fromhex("55c30f0bc306c3")  # push; ret; ud2; ret; (invalid in 64-bit); ret
    assert ret_offsets(code, BASE) == [1, 4, 6]


def test_register_families() -> None:
    assert register_family("eax") == register_family("al") == "rax"
    assert register_family("r9d") == register_family("r9b") == "r9"
    assert register_family("sil") == "rsi"
