"""Hardened XML parsing: no DTD processing, no entities, no network, size and depth caps.

A DOCTYPE that only names an external DTD (`<!DOCTYPE cluster SYSTEM "x.dtd">`, seen in real files) is kept
as text and never loaded. A DOCTYPE with an internal subset (where entities are declared) is refused, so
XXE and entity-expansion documents never get past this module and never leak a file's content.
"""
from __future__ import annotations

from lxml import etree

from cluster_conf.reports import ConfigError, error

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
    if b"[" in _doctype_bytes(data):
        # Checked before libxml2 sees the document, so entity declarations are never even parsed.
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
    if dtd is not None and (list(dtd.iterentities()) or list(dtd.elements())):
        raise ConfigError(
            error(
                "XML_DOCTYPE_FORBIDDEN",
                "a DOCTYPE with an internal subset (entity or element declarations) is not allowed",
                line=1,
            ),
            source,
        )
    return tree


def _doctype_bytes(data: bytes) -> bytes:
    """The DOCTYPE declaration up to its first `>` (an internal subset shows as a `[`), looked for in the prolog."""
    start = data.find(b"<!DOCTYPE", 0, 4096)
    if start < 0:
        return b""
    end = data.find(b">", start)
    return data[start : end + 1]
