"""The assembler: opcodes, push operands, labels and the errors it reports."""

from __future__ import annotations

import pytest

from khipu.devnet.assembler import AssemblyError, assemble


def test_opcodes_and_pushes() -> None:
    assert assemble("PUSH1 0x02 PUSH1 3 ADD") == bytes.fromhex("6002600301")
    assert assemble("PUSH2 0x0102 PUSH0 push32 1") == bytes.fromhex("6101025f7f") + (1).to_bytes(
        32, "big"
    )


def test_push_picks_the_shortest_form() -> None:
    assert assemble("PUSH 0 PUSH 255 PUSH 256") == bytes.fromhex("5f60ff610100")


def test_comments_and_constants() -> None:
    source = """
        PUSH4 SELECTOR   ; the function
        KECCAK256        ; an alias of SHA3
    """
    assert assemble(source, {"SELECTOR": 0xA9059CBB}) == bytes.fromhex("63a9059cbb20")


def test_labels_resolve_forward_and_backward() -> None:
    code = assemble("""
        PUSH2 end JUMP
    again:
        JUMPDEST PUSH2 again JUMP
    end:
        JUMPDEST STOP
    """)
    # end is at 4 (3-byte push + JUMP), then again at 4 pushes 4; end moves to 9
    assert code == bytes.fromhex("610009565b610004565b00")
    assert code[4] == 0x5B and code[9] == 0x5B


@pytest.mark.parametrize(
    "source, message",
    [
        ("FROB", "unknown mnemonic"),
        ("PUSH1", "needs an operand"),
        ("PUSH1 256", "does not fit"),
        ("PUSH2 nowhere", "unknown operand"),
        ("a: a: STOP", "defined twice"),
        ("PUSH33 1", "no push of 33"),
        ("PUSH start start: JUMPDEST", "unknown operand"),
    ],
)
def test_errors_name_the_problem(source: str, message: str) -> None:
    with pytest.raises(AssemblyError, match=message):
        assemble(source)


def test_errors_name_the_line() -> None:
    with pytest.raises(AssemblyError, match="line 3"):
        assemble("STOP\nSTOP\nBOGUS")
