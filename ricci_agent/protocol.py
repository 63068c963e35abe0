"""The ricci request/response protocol (version 1), carried by the SSH subsystem `ricci`.

Framing: JSON lines (UTF-8, one object per line, `\\n` terminated), at most `MAX_MESSAGE_BYTES` per line.

    request:  {"v": 1, "id": 7, "fn": "cluster.get_config", "args": {}}
    success:  {"v": 1, "id": 7, "ok": true, "result": {...}}
    failure:  {"v": 1, "id": 7, "ok": false, "error": {"code": "...", "message": "...", "details": {...}}}

A line that is too long, not JSON, or not a request object is answered with an error (id null when the id could not
be read) and the channel stays open. docs/ricci-protocol.md is the full reference.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

PROTOCOL_VERSION = 1
SUBSYSTEM = "ricci"
DEFAULT_PORT = 11111
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # cluster.conf may be 32 MiB (cluster_conf.xmlsafe.MAX_BYTES), JSON-escaped

# Error codes answered by the agent (the store's refusal codes come from ricci_agent.store).
MALFORMED = "malformed_request"
TOO_LARGE = "message_too_large"
UNSUPPORTED = "unsupported_protocol"
UNKNOWN_FUNCTION = "unknown_function"
BAD_ARGUMENTS = "bad_arguments"
INTERNAL = "internal_error"
NOT_AVAILABLE = "not_available"
DAEMON_FAILED = "daemon_failed"
# Error codes the client library produces for a node it could not get an answer from.
UNREACHABLE = "unreachable"
TIMEOUT = "timeout"
HOST_KEY_UNKNOWN = "host_key_unknown"
HOST_KEY_CHANGED = "host_key_changed"
AUTH_FAILED = "auth_failed"
CONNECTION_LOST = "connection_lost"
# Codes that mean "no answer from that node" (as opposed to an answer that is an error).
NO_ANSWER = frozenset({UNREACHABLE, TIMEOUT, CONNECTION_LOST})


class RicciError(Exception):
    """An error reply, or a failure to get a reply. `code` is stable; `message` is one line for people."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            data["details"] = self.details
        return data


@dataclass(frozen=True, slots=True)
class Request:
    id: int | str
    fn: str
    args: dict[str, Any] = field(default_factory=dict)


def encode(message: dict[str, Any]) -> bytes:
    try:
        return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
    except UnicodeEncodeError:  # a lone surrogate (from a request's JSON escapes): JSON can still carry it as \\uXXXX
        return json.dumps(message, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


class EncodedArgs(bytes):
    """A request's `args` already encoded as a JSON object (no newline): a fan-out encodes them once for all nodes."""


def encode_args(args: dict[str, Any] | EncodedArgs | None) -> EncodedArgs:
    if isinstance(args, EncodedArgs):
        return args
    return EncodedArgs(encode(args or {})[:-1])


def request_line(request_id: int, fn: str, args: dict[str, Any] | EncodedArgs | None = None) -> bytes:
    if isinstance(args, EncodedArgs):  # the same line encode() would make, with the args spliced in
        head = encode({"v": PROTOCOL_VERSION, "id": request_id, "fn": fn})
        return head[:-2] + b',"args":' + args + b"}\n"
    return encode({"v": PROTOCOL_VERSION, "id": request_id, "fn": fn, "args": args or {}})


def ok_line(request_id: int | str | None, result: dict[str, Any]) -> bytes:
    return encode({"v": PROTOCOL_VERSION, "id": request_id, "ok": True, "result": result})


def error_line(request_id: int | str | None, error: RicciError) -> bytes:
    return encode({"v": PROTOCOL_VERSION, "id": request_id, "ok": False, "error": error.to_dict()})


def parse_request(line: bytes) -> Request:
    """Decode one request line; RicciError (with `details["id"]` when the id was readable) if it is not one."""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, ValueError) as exc:
        raise RicciError(MALFORMED, f"the request is not valid JSON: {exc}") from None
    except RecursionError:
        raise RicciError(MALFORMED, "the request is nested too deeply") from None
    if not isinstance(message, dict):
        raise RicciError(MALFORMED, "the request is not a JSON object")
    request_id = message.get("id")
    if not isinstance(request_id, int | str) or isinstance(request_id, bool):
        raise RicciError(MALFORMED, "the request has no id (an integer or a string)")
    where = {"id": request_id}
    if message.get("v") != PROTOCOL_VERSION:
        shown = message.get("v")
        raise RicciError(UNSUPPORTED, f"protocol version {shown!r} is not supported (use {PROTOCOL_VERSION})", where)
    fn, args = message.get("fn"), message.get("args", {})
    if not isinstance(fn, str) or not fn:
        raise RicciError(MALFORMED, "the request has no function name ('fn')", where)
    if not isinstance(args, dict):
        raise RicciError(MALFORMED, "'args' must be a JSON object", where)
    return Request(request_id, fn, args)


def parse_reply(line: bytes) -> tuple[int | str | None, dict[str, Any] | RicciError]:
    """(id, result) or (id, RicciError) from one reply line; RicciError(MALFORMED) if it is not a reply."""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RicciError(MALFORMED, "the agent sent a reply that is not JSON") from None
    if not isinstance(message, dict) or "ok" not in message:
        raise RicciError(MALFORMED, "the agent sent something that is not a reply")
    request_id = message.get("id")
    if message["ok"] is True:
        result = message.get("result")
        return request_id, result if isinstance(result, dict) else {}
    error = message.get("error") if isinstance(message.get("error"), dict) else {}
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    return request_id, RicciError(str(error.get("code", INTERNAL)), str(error.get("message", "error")), details)


# -- the document as an argument or a result --------------------------------------------------------------
def xml_fields(data: bytes) -> dict[str, str]:
    """A document's exact bytes as the protocol carries them: `xml` (text) when they are UTF-8, else `xml_b64`.
    The agent stores what it receives byte for byte, and hashes those bytes (a push names its copy by hash)."""
    try:
        return {"xml": data.decode("utf-8")}
    except UnicodeDecodeError:
        return {"xml_b64": base64.b64encode(data).decode("ascii")}


def xml_arg(args: dict[str, Any]) -> bytes:
    """The document's bytes from `xml` or `xml_b64` (the inverse of xml_fields); RicciError(BAD_ARGUMENTS)."""
    if isinstance(args.get("xml"), str):
        try:
            return args["xml"].encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as exc:
            raise RicciError(BAD_ARGUMENTS, f"'xml' holds a character that is not Unicode text at position "
                             f"{exc.start} (a lone surrogate escape?)") from None
    if isinstance(args.get("xml_b64"), str):
        try:
            return base64.b64decode(args["xml_b64"], validate=True)
        except ValueError:
            raise RicciError(BAD_ARGUMENTS, "'xml_b64' is not valid base64") from None
    raise RicciError(BAD_ARGUMENTS, "missing argument 'xml' (the cluster.conf text) or 'xml_b64'")


TOO_LARGE_MARK = object()  # what LineReader yields for a line that was longer than the limit (already discarded)


class LineReader:
    """Split a byte stream into lines of at most `limit` bytes without ever holding more than that.

    A longer line is dropped as it arrives (nothing of it is kept) and reported once, as TOO_LARGE_MARK, when its
    end is seen: the stream stays usable for the next request.
    """

    def __init__(self, limit: int = MAX_MESSAGE_BYTES) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> Iterator[bytes | object]:
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            piece = data[start:] if end < 0 else data[start:end]
            start = len(data) if end < 0 else end + 1
            if not self._discarding:
                if len(self._buffer) + len(piece) > self.limit:
                    self._buffer.clear()
                    self._discarding = True
                else:
                    self._buffer += piece
            if end >= 0:
                if self._discarding:
                    self._discarding = False
                    yield TOO_LARGE_MARK
                else:
                    line = bytes(self._buffer)
                    self._buffer.clear()
                    if line.strip():
                        yield line

    @property
    def discarding(self) -> bool:
        return self._discarding
