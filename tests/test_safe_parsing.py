"""Hostile input is refused with a coded, one-line error, and never leaks or fetches anything."""
from __future__ import annotations

from pathlib import Path

import pytest

from cluster_conf import ClusterConf, ConfigError
from cluster_conf.xmlsafe import MAX_BYTES

MINIMAL = b'<cluster name="c" config_version="1"/>'


def _refused(data: bytes) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        ClusterConf.from_bytes(data)
    assert "\n" not in str(info.value)
    return info.value


XXE = (
    b'<?xml version="1.0"?>\n<!DOCTYPE cluster [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
    b'<cluster name="&e;" config_version="1"><clusternodes/></cluster>'
)


def test_xxe_file_entity_is_refused_as_doctype() -> None:
    assert _refused(XXE).report.code == "XML_DOCTYPE_FORBIDDEN"


def test_xxe_file_entity_is_refused_without_leaking() -> None:
    exc = _refused(XXE)
    assert exc.report.code == "XML_DOCTYPE_FORBIDDEN"
    text = str(exc) + repr(exc.report)
    passwd = Path("/etc/passwd")
    if passwd.exists():
        for line in passwd.read_text(errors="replace").splitlines():
            if line.strip():
                assert line not in text


def test_xxe_in_element_text_is_refused() -> None:
    data = b'<!DOCTYPE cluster [<!ENTITY e SYSTEM "file:///etc/hostname">]><cluster name="c">&e;</cluster>'
    assert _refused(data).report.code == "XML_DOCTYPE_FORBIDDEN"


def test_billion_laughs_is_refused() -> None:
    entities = ['<!ENTITY l0 "lol">'] + [f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10)]
    data = f'<?xml version="1.0"?><!DOCTYPE cluster [{"".join(entities)}]><cluster name="&l9;"/>'.encode()
    assert _refused(data).report.code == "XML_DOCTYPE_FORBIDDEN"


def test_deep_nesting_is_refused() -> None:
    depth = 300
    data = b'<cluster name="c" config_version="1">' + b"<x>" * depth + b"</x>" * depth + b"</cluster>"
    assert _refused(data).report.code == "XML_TOO_DEEP"


def test_oversized_input_is_refused_before_parsing() -> None:
    # One byte over the limit; a bytes object of that size is cheap, no document is built.
    data = MINIMAL + b" " * (MAX_BYTES + 1 - len(MINIMAL))
    assert len(data) == MAX_BYTES + 1
    exc = _refused(data)
    assert exc.report.code == "XML_TOO_LARGE"


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cluster.conf"
    with open(path, "wb") as f:
        f.write(MINIMAL)
        f.truncate(MAX_BYTES + 10)  # sparse file: no 32 MiB written to disk
    with pytest.raises(ConfigError) as info:
        ClusterConf.load(path)
    assert info.value.report.code == "XML_TOO_LARGE"


def test_external_doctype_without_subset_is_accepted_and_not_fetched(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the parser tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    data = (
        b'<?xml version="1.0"?>\n<!DOCTYPE cluster SYSTEM "http://127.0.0.1:9/cluster.dtd">\n'
        b'<cluster name="c" config_version="1"/>\n'
    )
    conf = ClusterConf.from_bytes(data)
    assert conf.name == "c"
    assert conf.to_bytes() == data
    conf.mark_edited()
    assert b'<!DOCTYPE cluster SYSTEM "http://127.0.0.1:9/cluster.dtd">' in conf.to_bytes()


def test_external_doctype_file_is_not_read(tmp_path: Path) -> None:
    dtd = tmp_path / "evil.dtd"
    dtd.write_text('<!ENTITY leak "SECRET-FROM-DTD">')
    data = f'<!DOCTYPE cluster SYSTEM "{dtd}"><cluster name="c" config_version="1"/>'.encode()
    conf = ClusterConf.from_bytes(data)
    assert b"SECRET-FROM-DTD" not in conf.to_bytes()


def test_undefined_entity_is_refused() -> None:
    exc = _refused(b'<cluster name="&undefined;" config_version="1"/>')
    assert exc.report.code in ("XML_ENTITY_FORBIDDEN", "XML_MALFORMED")


def test_malformed_and_empty_input() -> None:
    assert _refused(b"<cluster>").report.code == "XML_MALFORMED"
    assert _refused(b"   ").report.code == "XML_MALFORMED"
    assert _refused(b"<notcluster/>").report.code == "ROOT_NOT_CLUSTER"


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        ClusterConf.load(tmp_path / "absent.conf")
    assert info.value.report.code == "FILE_NOT_FOUND"
    with pytest.raises(ConfigError) as info:
        ClusterConf.load(tmp_path)
    assert info.value.report.code == "FILE_UNREADABLE"


def test_malformed_template_gets_a_template_hint() -> None:
    exc = _refused(b'{% set x = 1 %}\n<cluster name="{{ name }}" config_version="1"></cluster>')
    assert exc.report.code == "XML_MALFORMED"
    assert exc.report.hint is not None and "unrendered template" in exc.report.hint


def test_internal_subset_after_a_long_prolog_is_still_refused() -> None:
    data = (
        b'<?xml version="1.0"?>\n<!--' + b"x" * (2 << 20) + b'-->\n'
        b'<!DOCTYPE cluster [<!ATTLIST clusternode votes CDATA "200">]>\n'
        b'<cluster name="c" config_version="1"><clusternodes><clusternode name="n1" nodeid="1"/>'
        b"</clusternodes></cluster>"
    )
    assert _refused(data).report.code == "XML_DOCTYPE_FORBIDDEN"


def test_doctype_text_inside_a_comment_is_not_a_doctype() -> None:
    data = b'<?xml version="1.0"?>\n<!-- old: <!DOCTYPE cluster [ ] > -->\n<cluster name="c" config_version="1"/>'
    assert ClusterConf.from_bytes(data).name == "c"
