"""ClusterConf: loading, byte-exact saving, atomic writes, transactions."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from cluster_conf import ClusterConf, ConfigError
from cluster_conf import document as document_mod


def test_unedited_document_is_written_back_byte_for_byte(small_conf_file: Path, tmp_path: Path) -> None:
    conf = ClusterConf.load(small_conf_file)
    out = tmp_path / "out.conf"
    conf.save(out)
    assert out.read_bytes() == small_conf_file.read_bytes()


def test_quirky_layout_survives_when_untouched() -> None:
    text = (
        "<?xml version='1.0' encoding='UTF-8'?>\n<!-- top -->\n"
        "<cluster name='x'  config_version='1' ><rm></rm></cluster>\n<!-- end -->"
    )
    conf = ClusterConf.from_string(text)
    assert conf.to_bytes() == text.encode()


def test_edit_keeps_prolog_epilog_comments_and_unknowns(small_conf_text: str) -> None:
    text = "<?xml version='1.0'?>\n<!-- before -->\n" + small_conf_text.split("\n", 1)[1] + "<!-- after -->\n"
    conf = ClusterConf.from_string(text)
    with conf.transaction():
        conf.root.find("cman").set("expected_votes", "4")
    out = conf.to_string()
    assert out.startswith("<?xml version='1.0'?>\n<!-- before -->\n<cluster")
    assert out.endswith("</cluster>\n<!-- after -->\n")
    assert "<!-- hand-written note that must survive edits -->" in out
    assert 'x-site="rack7"' in out and '<x-extension keep="me"/>' in out
    assert 'config_version="4"' in out and 'expected_votes="4"' in out
    # Everything but the two edited attributes is unchanged, line for line.
    changed = [(a, b) for a, b in zip(text.splitlines(), out.splitlines(), strict=True) if a != b]
    assert len(changed) == 2


def test_transaction_bumps_by_exactly_one_and_rolls_back(small_conf_text: str) -> None:
    conf = ClusterConf.from_string(small_conf_text)
    with conf.transaction():
        conf.root.find("cman").set("expected_votes", "5")
        conf.root.find("cman").set("port", "6000")
    assert conf.config_version == 4
    with pytest.raises(RuntimeError), conf.transaction():
        conf.root.find("cman").set("expected_votes", "9")
        raise RuntimeError("boom")
    assert conf.config_version == 4
    assert conf.root.find("cman").get("expected_votes") == "5"


def test_transaction_refuses_non_integer_version_without_changing_anything() -> None:
    conf = ClusterConf.from_string('<cluster name="c" config_version="1.0"><cman/></cluster>')
    with pytest.raises(ConfigError) as exc, conf.transaction():
        conf.root.find("cman").set("port", "1")
    assert exc.value.report.code == "VERSION_NOT_INTEGER"
    assert conf.root.find("cman").get("port") is None


def test_save_is_atomic_and_keeps_old(small_conf_file: Path) -> None:
    conf = ClusterConf.load(small_conf_file)
    before = small_conf_file.read_bytes()
    with conf.transaction():
        conf.root.find("cman").set("expected_votes", "4")
    conf.save()
    assert Path(f"{small_conf_file}.old").read_bytes() == before
    assert b'config_version="4"' in small_conf_file.read_bytes()
    assert sorted(p.name for p in small_conf_file.parent.iterdir()) == ["cluster.conf", "cluster.conf.old"]


def test_failed_write_leaves_the_old_file_whole_and_no_temp_files(
    small_conf_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = small_conf_file.read_bytes()
    conf = ClusterConf.load(small_conf_file)
    with conf.transaction():
        conf.root.find("cman").set("expected_votes", "4")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(document_mod.os, "replace", broken_replace)
    with pytest.raises(OSError):
        conf.save()
    monkeypatch.undo()
    assert small_conf_file.read_bytes() == before
    assert [p.name for p in small_conf_file.parent.iterdir()] == ["cluster.conf"]


def test_new_file_mode_is_0640(tmp_path: Path) -> None:
    conf = ClusterConf.new("fresh")
    target = tmp_path / "cluster.conf"
    conf.save(target)
    assert os.stat(target).st_mode & 0o777 == 0o640
    assert ClusterConf.load(target).name == "fresh"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "XML_MALFORMED"),
        (b"<cluster><a></cluster>", "XML_MALFORMED"),
        (b"<clusterx/>", "ROOT_NOT_CLUSTER"),
    ],
)
def test_bad_documents_are_refused_with_a_code(data: bytes, code: str) -> None:
    with pytest.raises(ConfigError) as exc:
        ClusterConf.from_bytes(data, "f.conf")
    assert exc.value.report.code == code
    assert "\n" not in str(exc.value)
    assert str(exc.value).startswith("f.conf")


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        ClusterConf.load(tmp_path / "nope.conf")
    assert exc.value.report.code == "FILE_NOT_FOUND"
    with pytest.raises(ConfigError) as exc:
        ClusterConf.load(tmp_path)
    assert exc.value.report.code == "FILE_UNREADABLE"


_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00"), max_size=20
)


@settings(max_examples=150, deadline=None)
@given(attrs=st.dictionaries(_names, _values, max_size=6), comment=st.text(alphabet="abc xyz", max_size=10))
def test_edit_round_trip_preserves_arbitrary_unknown_attributes(attrs: dict[str, str], comment: str) -> None:
    conf = ClusterConf.from_string(f'<cluster name="p" config_version="1"><!--{comment}--><rm/></cluster>')
    unknown = etree.SubElement(conf.root, "x-unknown")
    for k, v in attrs.items():
        unknown.set(k, v)
    with conf.transaction():
        conf.root.find("rm").set("log_level", "6")
    again = ClusterConf.from_bytes(conf.to_bytes())
    got = again.root.find("x-unknown")
    assert list(got.attrib.items()) == list(attrs.items())
    assert again.root[0].text == comment
    assert again.config_version == 2


# -- encodings, byte-order marks, line endings (found in review: they used to lose the prolog) -------------
BODY = '<cluster name="b" config_version="1">\n  <clusternodes/>\n  <rm alias="café"/>\n</cluster>\n'
PROLOG = '<?xml version="1.0" encoding="{enc}"?>\n<!-- Managed by Puppet: do not edit -->\n'


def _edit_once(conf: ClusterConf) -> None:
    with conf.transaction():
        conf.root.find("clusternodes").set("x-touched", "1")


@pytest.mark.parametrize(
    ("codec", "declared", "bom"),
    [
        ("utf-8", "UTF-8", b"\xef\xbb\xbf"),
        ("utf-16-le", "UTF-16", b"\xff\xfe"),
        ("utf-16-be", "UTF-16", b"\xfe\xff"),
        ("iso-8859-1", "ISO-8859-1", b""),
    ],
)
def test_edit_keeps_bom_encoding_and_prolog(codec: str, declared: str, bom: bytes) -> None:
    raw = bom + (PROLOG.format(enc=declared) + BODY).encode(codec)
    conf = ClusterConf.from_bytes(raw)
    _edit_once(conf)
    out = conf.to_bytes()
    assert out.startswith(bom + PROLOG.format(enc=declared).encode(codec))
    expected = (PROLOG.format(enc=declared) + BODY).replace('config_version="1"', 'config_version="2"')
    expected = expected.replace("<clusternodes/>", '<clusternodes x-touched="1"/>')
    assert out == bom + expected.encode(codec)
    assert ClusterConf.from_bytes(out).root.find("rm").get("alias") == "café"


def test_edit_keeps_crlf_line_endings() -> None:
    raw = (PROLOG.format(enc="UTF-8") + BODY).replace("\n", "\r\n").encode()
    conf = ClusterConf.from_bytes(raw)
    _edit_once(conf)
    out = conf.to_bytes()
    assert out.count(b"\r\n") == out.count(b"\n") == raw.count(b"\r\n")


def test_rollback_keeps_encoding_root_object_and_line_numbers() -> None:
    raw = (PROLOG.format(enc="ISO-8859-1") + BODY).encode("iso-8859-1")
    conf = ClusterConf.from_bytes(raw)
    root = conf.root
    with pytest.raises(ValueError), conf.transaction():
        conf.root.find("rm").set("alias", "changed")
        raise ValueError("refused")
    assert conf.root is root and conf.root.find("rm").sourceline == 5
    _edit_once(conf)  # a later successful edit still writes Latin-1 under the Latin-1 declaration
    assert ClusterConf.from_bytes(conf.to_bytes()).root.find("rm").get("alias") == "café"


def test_nested_transactions_bump_once_and_inner_failure_rolls_back_only_inner() -> None:
    conf = ClusterConf.from_string(BODY)
    with conf.transaction():
        conf.root.find("rm").set("log_level", "6")
        with pytest.raises(KeyError), conf.transaction():
            conf.root.find("rm").set("log_level", "7")
            raise KeyError("inner")
        with conf.transaction():
            conf.root.find("clusternodes").set("x-touched", "1")
    assert conf.config_version == 2
    assert conf.root.find("rm").get("log_level") == "6"
    assert conf.root.find("clusternodes").get("x-touched") == "1"


def test_processing_instruction_with_markup_after_the_root_survives_an_edit() -> None:
    raw = BODY + '<?php echo "<?"; ?>\n<!-- end -->\n'
    conf = ClusterConf.from_string(raw)
    _edit_once(conf)
    out = conf.to_string()
    assert out.endswith('</cluster>\n<?php echo "<?"; ?>\n<!-- end -->\n')
    ClusterConf.from_string(out)


def test_saving_an_edited_document_makes_it_the_new_original(tmp_path: Path) -> None:
    conf = ClusterConf.from_string(BODY)
    _edit_once(conf)
    target = tmp_path / "c.conf"
    conf.save(target)
    assert not conf.edited and conf.to_bytes() == target.read_bytes()


@pytest.mark.parametrize("codec", ["utf-8", "utf-16-le"])
def test_prolog_and_epilog_longer_than_a_read_chunk_survive_an_edit(codec: str) -> None:
    big = "x" * 200_000  # longer than the 64 KiB chunks the layout is read in
    text = f'<?xml version="1.0"?>\n<!-- {big} -->\n{BODY}<!-- {big} -->\n<?pi {big}?>\n'
    raw = text.encode(codec)
    conf = ClusterConf.from_bytes(raw)
    _edit_once(conf)
    out = conf.to_bytes().decode(codec)
    assert out.startswith(f'<?xml version="1.0"?>\n<!-- {big} -->\n<cluster')
    assert out.endswith(f"</cluster>\n<!-- {big} -->\n<?pi {big}?>\n")
