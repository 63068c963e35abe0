"""Hardened XML parsing: no DTD processing, no entities, no network, size and depth caps.

A DOCTYPE that only names an external DTD (`<!DOCTYPE cluster SYSTEM "x.dtd">`, seen in real files) is kept
as text and never loaded. A DOCTYPE with an internal subset (where entities are declared) is refused, so
XXE and entity-expansion documents never get past this module and never leak a file's content.
"""
from __future__ import annotations

import codecs
import re

from lxml import etree

from cluster_conf.reports import ConfigError, error

_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: its BOM starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_DECLARED_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
# Tokens that may come before the root element; a DOCTYPE with an internal subset matches up to its "[".
_PROLOG_TOKEN = re.compile(r"\s+|<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>\[]*(?:\[|>)", re.S)
_PI_START = re.compile(r"<\?[A-Za-z_:][\w.:-]*(?:\s|\?>)")

MAX_BYTES = 32 * 1024 * 1024
# libxml2 refuses documents nested deeper than 256 levels unless huge_tree is set; we never set it.
MAX_DEPTH = 256

_PARSER_OPTIONS = dict(
    resolve_entities=False,
    no_network=True,
    huge_tree=False,
    load_dtd=False,
    dtd_validation=False,
    remove_comments=False,
    remove_pis=False,
    remove_blank_text=False,
    strip_cdata=False,
)


def make_parser() -> etree.XMLParser:
    return etree.XMLParser(**_PARSER_OPTIONS)


def sniff(raw: bytes) -> tuple[bytes, str]:
    """(byte-order mark, Python codec) of a document: from its BOM, its first bytes, or its declaration."""
    for bom, codec in _BOMS:
        if raw.startswith(bom):
            return bom, codec
    if raw[:2] == b"<\x00":
        return b"", "utf-16-le"
    if raw[:2] == b"\x00<":
        return b"", "utf-16-be"
    declared = _DECLARED_ENCODING.match(raw[:512])
    if declared:
        try:
            return b"", codecs.lookup(declared.group(1).decode("ascii")).name
        except LookupError:
            pass
    return b"", "utf-8"


_CODE_UNIT = {"utf-16-le": 2, "utf-16-be": 2, "utf-32-le": 4, "utf-32-be": 4}
_CHUNK = 64 * 1024


def prolog(raw: bytes) -> tuple[bytes, str, str]:
    """(BOM, codec, prolog text): decodes only as much of the file as the prolog takes, not all of it."""
    bom, codec = sniff(raw)
    body = raw[len(bom) :]
    size = _CHUNK
    while True:
        text = body[:size].decode(codec, "surrogateescape")
        end = prolog_end(text)
        # Done when the root start tag is inside the chunk, not a prolog token the chunk cut in two.
        if size >= len(body) or (len(text) - end > 16 and not text.startswith(("<?", "<!"), end)):
            return bom, codec, text[:end]
        size *= 4


def epilog(raw: bytes, codec: str) -> str:
    """The text after the root element (blanks, comments, PIs), decoding only the end of the file."""
    unit = _CODE_UNIT.get(codec, 1)
    size = _CHUNK
    while True:
        cut = max(len(raw) - size, 0)
        cut -= cut % unit  # start on a code-unit boundary (a UTF-8 cut mid-character only affects the start)
        text = raw[cut:].decode(codec, "surrogateescape")
        start = epilog_start(text)
        if cut == 0 or start > 16:  # the root end tag is inside the chunk: done
            return text[start:]
        size *= 4


def prolog_end(text: str) -> int:
    """Index of the root start tag: the XML declaration, DOCTYPE, comments, PIs and blanks come before it."""
    pos = 0
    while True:
        m = _PROLOG_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            return pos
        pos = m.end()


def doctype_has_internal_subset(text: str) -> bool:
    """True when the prolog holds a DOCTYPE with an internal subset (`<!DOCTYPE x [ ... ]>`)."""
    pos = 0
    while True:
        m = _PROLOG_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            return False
        if m.group().startswith("<!DOCTYPE") and m.group().endswith("["):
            return True
        pos = m.end()


def epilog_start(text: str) -> int:
    """Index where the blanks, comments and PIs after the root element begin (scanning from the end).

    A comment cannot contain `--`, so the last `<!--` starts it; a PI may contain `<?` in its data, so a
    candidate start counts only when a valid PI target follows it.
    """
    end = len(text)
    while end > 0:
        if text[end - 1] in " \t\r\n":
            end -= 1
        elif text.endswith("-->", 0, end):
            end = text.rfind("<!--", 0, end)
        elif text.endswith("?>", 0, end):
            start = text.rfind("<?", 0, end)
            while start > 0 and not _PI_START.match(text, start):
                start = text.rfind("<?", 0, start)
            end = start
        else:
            break
    return max(end, 0)


def _syntax_message(exc: etree.XMLSyntaxError) -> tuple[str, str, int | None]:
    """Map libxml2's message to (code, one-line message, line) without echoing document content."""
    msg = str(exc.msg or exc).split("\n")[0]
    line = exc.lineno or None
    low = msg.lower()
    if "excessive depth" in low:
        return "XML_TOO_DEEP", f"document nests deeper than {MAX_DEPTH} levels", line
    if "amplification" in low or ("entity" in low and "loop" in low):
        return "XML_ENTITY_FORBIDDEN", "entity expansion is not allowed in cluster.conf", line
    if "entity" in low and ("not defined" in low or "undeclared" in low):
        return "XML_ENTITY_FORBIDDEN", "entity references are not allowed in cluster.conf", line
    if "too long" in low or "huge" in low:
        return "XML_TOO_LARGE", "a text node or name is larger than the parser allows", line
    # libxml2 appends "(<string>, line N)" or the file name; drop that, keep its own words.
    msg = msg.split(", line ")[0] if ", line " in msg else msg
    return "XML_MALFORMED", f"not well-formed XML: {msg}", line


def parse(data: bytes, source: str = "<string>") -> etree._ElementTree:
    """Parse `data` safely; raise ConfigError with a one-line report on anything refused."""
    if len(data) > MAX_BYTES:
        raise ConfigError(
            error("XML_TOO_LARGE", f"file is {len(data)} bytes; the limit is {MAX_BYTES} bytes"), source
        )
    if not data.strip():
        raise ConfigError(error("XML_MALFORMED", "file is empty"), source)
    if doctype_has_internal_subset(prolog(data)[2]):
        # Checked before libxml2 sees the document, so declarations are never even parsed.
        raise ConfigError(
            error("XML_DOCTYPE_FORBIDDEN", "a DOCTYPE with an internal subset is not allowed", line=1), source
        )
    try:
        root = etree.fromstring(data, make_parser())
    except etree.XMLSyntaxError as exc:
        code, message, line = _syntax_message(exc)
        hint = None
        if code == "XML_MALFORMED" and (b"{%" in data or b"{{" in data):
            hint = "this looks like an unrendered template (Jinja2/Ansible): render it before installing the file"
        raise ConfigError(error(code, message, line=line, hint=hint), source) from None
    except ValueError as exc:  # e.g. a unicode string with an encoding declaration
        raise ConfigError(error("XML_MALFORMED", f"not well-formed XML: {exc}"), source) from None
    tree = root.getroottree()
    dtd = tree.docinfo.internalDTD
    if dtd is not None and (list(dtd.iterentities()) or list(dtd.iterelements())):
        raise ConfigError(
            error(
                "XML_DOCTYPE_FORBIDDEN",
                "a DOCTYPE with an internal subset (entity, element or attribute declarations) is not allowed",
                line=1,
            ),
            source,
        )
    return tree
