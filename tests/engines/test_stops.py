from __future__ import annotations

import pytest

from modelgrid.engines.stops import TextAssembler


def feed_all(asm: TextAssembler, pieces: list[bytes]) -> tuple[list[str], bool]:
    out: list[str] = []
    for p in pieces:
        text, stopped = asm.feed(p)
        out.append(text)
        if stopped:
            return out, True
    out.append(asm.flush())
    return out, False


@pytest.mark.parametrize("text", ["首都是巴黎", "สวัสดีครับ", "안녕하세요", "hi 👋🏽 there 🇫🇷"])
def test_multibyte_characters_split_across_tokens_are_never_emitted_in_halves(text: str) -> None:
    data = text.encode()
    pieces = [data[i : i + 1] for i in range(len(data))]  # worst case: one byte per token
    out, stopped = feed_all(TextAssembler(), pieces)
    assert not stopped
    assert "".join(out) == text
    assert all("\ufffd" not in chunk for chunk in out)


def test_stop_spanning_tokens_is_not_leaked() -> None:
    asm = TextAssembler(("END",))
    assert asm.feed(b"abc E") == ("abc ", False)  # "E" held back: could start "END"
    assert asm.feed(b"N") == ("", False)
    assert asm.feed(b"D and more") == ("", True)


def test_held_back_prefix_is_released_when_it_turns_out_not_to_be_a_stop() -> None:
    asm = TextAssembler(("END",))
    assert asm.feed(b"E") == ("", False)
    assert asm.feed(b"x") == ("Ex", False)


def test_earliest_of_several_stops_wins_and_text_before_it_is_kept() -> None:
    asm = TextAssembler(("\n\n", "STOP"))
    assert asm.feed(b"one STOP two\n\n") == ("one ", True)


def test_flush_returns_held_text_at_natural_end() -> None:
    asm = TextAssembler(("END",))
    assert asm.feed(b"the E") == ("the ", False)
    assert asm.flush() == "E"


def test_stop_made_of_multibyte_characters() -> None:
    asm = TextAssembler(("。",))
    data = "好的。再见".encode()
    out, stopped = feed_all(asm, [data[i : i + 1] for i in range(len(data))])
    assert stopped
    assert "".join(out) == "好的"


def test_the_matched_stop_string_is_known() -> None:
    """The earliest occurrence wins, whichever stop was listed first (``Delta.matched_stop``,
    Anthropic's ``stop_sequence``)."""
    asm = TextAssembler(("lazy", "fox", "brown fox"))
    out, stopped = feed_all(asm, [b"the quick br", b"own fox jumps"])
    assert stopped and "".join(out) == "the quick " and asm.matched == "brown fox"
    asm = TextAssembler(("zzz",))
    feed_all(asm, [b"no stop here"])
    assert asm.matched is None
