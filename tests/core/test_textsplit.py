"""Splitting long canonical text for platforms with a length limit."""

from __future__ import annotations

from roomlink.message.textsplit import split_text


def test_short_text_and_no_limit_stay_whole() -> None:
    assert split_text("hello", 10) == ["hello"]
    assert split_text("x" * 100_000, None) == ["x" * 100_000]


def test_prefers_line_breaks_then_spaces_and_loses_no_word() -> None:
    text = "alpha beta gamma\ndelta epsilon zeta eta theta"
    parts = split_text(text, 20)
    assert all(len(p) <= 20 for p in parts)
    assert parts[0] == "alpha beta gamma"
    assert " ".join(parts).split() == text.split()


def test_a_word_longer_than_the_limit_is_cut_without_splitting_an_escape() -> None:
    parts = split_text("a" * 9 + "\\*" + "b" * 9, 10)
    assert all(len(p) <= 10 for p in parts)
    assert "".join(parts) == "a" * 9 + "\\*" + "b" * 9
    assert not any(p.endswith("\\") for p in parts)
