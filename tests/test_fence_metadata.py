"""Fence device forms from the agents' own metadata: the real fence_dummy and fence_ipmilan (fence-agents) run
with `-o metadata`; an absent agent gets the generic key=value form."""
from __future__ import annotations

import pytest

from luci_web.clusters import fence_metadata
from luci_web.clusters.fence_metadata import agent_form, agent_path, parse_metadata

needs = pytest.mark.skipif(agent_path("fence_ipmilan") is None or agent_path("fence_dummy") is None,
                           reason="fence_ipmilan/fence_dummy are not installed under /usr/sbin (fence-agents)")


@needs
def test_ipmilan_parameters_come_from_its_metadata() -> None:
    form = agent_form("fence_ipmilan")
    assert not form.generic and form.problem == ""
    names = [p.name for p in form.params]
    assert {"ip", "ipport", "username", "password", "lanplus", "auth", "passwd", "ipaddr"} <= set(names)
    # command-line switches and per-node parameters are not device attributes
    assert not {"action", "help", "verbose", "plug", "port"} & set(names)
    assert form.param("password").secret and form.param("passwd").secret and form.param("hexadecimal_kg").secret
    assert not form.param("password_script").secret and not form.param("ip").secret
    assert form.param("ipport").default == "623" and form.param("ipport").type == "integer"
    assert form.param("auth").type == "select" and form.param("auth").choices == ("md5", "password", "none")
    assert form.param("passwd").deprecated and not form.param("password").deprecated
    assert "IP address" in form.param("ip").shortdesc


@needs
def test_dummy_metadata_and_the_cache() -> None:
    form = agent_form("fence_dummy")
    assert form.agent == "fence_dummy" and form.shortdesc == "Dummy fence agent"
    assert form.param("status_file").default == "/tmp/fence_dummy.status"
    assert form.param("type").default == "file"
    assert agent_form("fence_dummy") is form  # cached per process


def test_absent_agent_gets_the_generic_form(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(fence_metadata, "AGENT_DIR", tmp_path)
    agent_form.cache_clear()
    try:
        form = agent_form("fence_nothere")
        assert form.generic and form.params == () and "not installed" in form.problem
        bad = agent_form("../../bin/sh")
        assert bad.generic and "not a fence agent name" in bad.problem
    finally:
        agent_form.cache_clear()


def test_an_agent_that_hangs_or_fails_falls_back(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "fence_hang").write_text("#!/bin/sh\nsleep 30\n")
    (tmp_path / "fence_fail").write_text("#!/bin/sh\necho nope\nexit 3\n")
    for name in ("fence_hang", "fence_fail"):
        (tmp_path / name).chmod(0o755)
    monkeypatch.setattr(fence_metadata, "AGENT_DIR", tmp_path)
    monkeypatch.setattr(fence_metadata, "METADATA_TIMEOUT", 0.5)
    agent_form.cache_clear()
    try:
        assert "no answer within 0.5 s" in agent_form("fence_hang").problem
        assert "exited with status 3" in agent_form("fence_fail").problem
        assert fence_metadata.installed_agents() == ["fence_fail", "fence_hang"]
    finally:
        agent_form.cache_clear()


def test_parse_refuses_what_is_not_agent_metadata() -> None:
    with pytest.raises(ValueError, match="not XML"):
        parse_metadata(b"<oops", "fence_x")
    with pytest.raises(ValueError, match="is not <resource-agent>"):
        parse_metadata(b"<html/>", "fence_x")
    xxe = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
           b'<resource-agent name="fence_x"><parameters><parameter name="a"><shortdesc>&e;</shortdesc>'
           b'</parameter></parameters></resource-agent>')
    form = parse_metadata(xxe, "fence_x")
    assert "root:" not in form.param("a").shortdesc
