"""Cleaning a file's name (issue 21, item 7): what a hostile name becomes before it is
stored or shown anywhere."""

from __future__ import annotations

import unicodedata

import pytest

from roomlink.message.filenames import clean_filename

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def safe(name: str) -> bool:
    return (bool(name) and name not in (".", "..") and "/" not in name and "\\" not in name
            and len(name.encode("utf-8")) <= 255
            and not any(unicodedata.category(c) == "Cc" for c in name)
            and not any(c in name for c in BIDI))


@pytest.mark.parametrize(("given", "expected"), [
    ("../etc/passwd", ".._etc_passwd"),  # no folder to climb out of
    ("..\\..\\boot.ini", ".._.._boot.ini"),
    ("/absolute/name.txt", "_absolute_name.txt"),
    ("invoice\u202egnp.exe", "invoicegnp.exe"),  # an .exe no longer shows as a .png
    ("\u2067hidden\u2069.pdf", "hidden.pdf"),
    ("отчёт за ноябрь.pdf", "отчёт за ноябрь.pdf"),  # letters of every script stay
    ("报告.docx", "报告.docx"),
    ("تقرير.pdf", "تقرير.pdf"),
    ("a\x00b.txt", "ab.txt"),  # NUL
    ("line\r\nbreak.txt", "linebreak.txt"),  # no header or log line broken
    ("tab\there.txt", "tabhere.txt"),
    ("family 👨\u200d👩\u200d👧.png", "family 👨\u200d👩\u200d👧.png"),  # joiners stay
    ("e\u0301te\u0301.txt", "été.txt"),  # one form (NFC) for the same letters
    (".", "file"), ("..", "file"), ("", "file"), ("   ", "file"), ("\u202e", "file"),
    (None, "file"), ("...", "file"),
    (".bashrc", ".bashrc"),
])
def test_hostile_names_are_cleaned(given: str | None, expected: str) -> None:
    assert clean_filename(given) == expected
    assert safe(clean_filename(given))


def test_a_long_name_is_cut_on_a_character_boundary_keeping_its_extension() -> None:
    emoji = "😀" * 75 + ".png"  # 304 bytes of UTF-8
    cleaned = clean_filename(emoji)
    assert cleaned.endswith(".png") and safe(cleaned)
    assert set(cleaned.removesuffix(".png")) == {"😀"}  # no half character left
    assert len(cleaned.encode()) == 4 * 62 + 4
    cyrillic = "я" * 300  # no extension: cut where it must
    assert clean_filename(cyrillic) == "я" * 127
    long_ext = "a" * 10 + "." + "b" * 300  # not an extension: just a long name
    assert len(clean_filename(long_ext).encode()) == 255


def test_cleaning_is_stable() -> None:
    for name in ("../etc/passwd", "x\u202ey.exe", "😀" * 75 + ".png", "."):
        once = clean_filename(name)
        assert clean_filename(once) == once
