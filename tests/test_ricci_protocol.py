"""Framing and message checks of the ricci protocol (pure functions; the daemon side is in test_ricci_agent)."""
from __future__ import annotations

import pytest

from ricci_agent.protocol import (
    MALFORMED,
    TOO_LARGE_MARK,
    UNSUPPORTED,
    LineReader,
    RicciError,
    encode_args,
    error_line,
    ok_line,
    parse_reply,
    parse_request,
    request_line,
)


def test_line_reader_splits_across_chunks_and_drops_oversize_lines_only() -> None:
    reader = LineReader(limit=10)
    out = list(reader.feed(b'{"a":1}\n{"b"')) + list(reader.feed(b":2}\n" + b"x" * 30)) + list(reader.feed(b"yy\nok\n"))
    assert out == [b'{"a":1}', b'{"b":2}', TOO_LARGE_MARK, b"ok"]
    assert not reader.discarding


def test_line_reader_never_holds_more_than_the_limit() -> None:
    reader = LineReader(limit=100)
    for _ in range(1000):
        assert list(reader.feed(b"z" * 4096)) == []
        assert len(reader._buffer) <= 100
    assert list(reader.feed(b"\n")) == [TOO_LARGE_MARK]


def test_request_round_trip_and_malformed_requests() -> None:
    req = parse_request(request_line(7, "hello", {"x": 1}).rstrip(b"\n"))
    assert (req.id, req.fn, req.args) == (7, "hello", {"x": 1})
    for bad in (b"not json", b"[1]", b'{"v":1,"fn":"hello"}', b'{"v":1,"id":true,"fn":"x"}'):
        with pytest.raises(RicciError) as exc:
            parse_request(bad)
        assert exc.value.code == MALFORMED
    with pytest.raises(RicciError) as wrong:
        parse_request(b'{"v":9,"id":3,"fn":"hello"}')
    assert wrong.value.code == UNSUPPORTED and wrong.value.details == {"id": 3}
    with pytest.raises(RicciError) as args:
        parse_request(b'{"v":1,"id":3,"fn":"hello","args":[]}')
    assert args.value.code == MALFORMED


def test_replies_round_trip() -> None:
    assert parse_reply(ok_line(4, {"r": "é"})) == (4, {"r": "é"})
    rid, err = parse_reply(error_line(5, RicciError("race_lost", "lost", {"version": 3})))
    assert rid == 5 and isinstance(err, RicciError) and (err.code, err.message, err.details) == (
        "race_lost", "lost", {"version": 3})


def test_lone_surrogates_and_deep_nesting_do_not_break_the_codec() -> None:
    line = error_line(3, RicciError("unknown_function", "unknown function '\ud800'"))
    rid, err = parse_reply(line)
    assert rid == 3 and isinstance(err, RicciError) and err.message == "unknown function '\ud800'"
    with pytest.raises(RicciError) as deep:
        parse_request(b'{"v":1,"id":1,"fn":"x","args":{"a":' + b"[" * 50000 + b"]" * 50000 + b"}}")
    assert deep.value.code == MALFORMED


def test_authorize_refuses_a_key_line_with_control_characters(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ricci_agent import keys

    line = keys.ensure_client_key(tmp_path / "a")
    other = keys.ensure_client_key(tmp_path / "b")
    with pytest.raises(keys.KeyFileError, match="control character"):
        keys.authorize(tmp_path / "node", f"{line} comment\n{other}")
    assert not (tmp_path / "node" / keys.AUTHORIZED_KEYS).exists()
    assert keys.authorize(tmp_path / "node", line.replace(" ", "\t", 1)) is True  # a tab is a separator


def test_resolve_takes_addresses_as_they_are_and_names_through_the_bounded_worker() -> None:
    # (no lookup of an unknown name here: it could send a DNS query off the machine)
    from ricci_agent.client import resolve

    assert resolve("127.0.0.5", 1.0) == "127.0.0.5"
    assert resolve("localhost", 3.0).startswith(("127.", "::1"))  # /etc/hosts


@pytest.mark.parametrize("args", [None, {}, {"xml": "<cluster name=\"é\"/>", "n": 3}, {"xml": "lone \ud800 surrogate"}])
def test_args_encoded_once_give_the_same_line_as_the_dict(args: dict | None) -> None:
    """A fan-out encodes its arguments once and splices them into every node's request line: the agent must
    receive exactly what a per-node encoding would have sent."""
    once = encode_args(args)
    for request_id in (1, 42):
        line = request_line(request_id, "cluster.stage", once)
        assert line == request_line(request_id, "cluster.stage", args)
        assert parse_request(line.rstrip(b"\n")).args == (args or {})
