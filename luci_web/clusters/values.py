"""Checks of values typed by a person, shared by the console's forms and the API's serializers (one way each):
what cluster.conf can hold, and whole numbers written strictly."""
from __future__ import annotations

import re

# What XML 1.0 cannot hold (its Char production): C0 controls but tab, newline and carriage return (browsers send
# textarea lines as CRLF), lone surrogates, U+FFFE and U+FFFF. lxml refuses these with a ValueError.
XML_UNSAFE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
WHOLE_NUMBER = re.compile(r"[0-9]{1,12}")


def xml_unsafe(text: str) -> str:
    """'' when `text` can be an XML attribute value, else one line naming the first character it cannot hold."""
    found = XML_UNSAFE.search(text)
    if found is None:
        return ""
    return f"contains a character XML cannot hold (U+{ord(found.group()):04X} at position {found.start() + 1})"


def whole_number(text: str, low: int, high: int) -> int:
    """The one strict parser of whole numbers typed in the console: ASCII digits only (str.isdigit() also takes
    "²", which int() refuses), within [low, high]. ValueError with one line saying what is expected."""
    text = (text or "").strip()
    expected = f"a whole number from {low} to {high}"
    if not WHOLE_NUMBER.fullmatch(text):
        raise ValueError(expected)
    number = int(text)
    if not low <= number <= high:
        raise ValueError(expected)
    return number
