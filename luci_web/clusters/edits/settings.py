"""Cluster-wide settings (cman, totem, quorumd with its heuristics, fence_daemon, logging with its per-daemon
settings): the pure edit functions the console's Configure tab and the API share, and the one way to show them
as dicts. An attribute's value is a string as in the file; None (JSON null) removes it."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cluster_conf import ClusterConf, edit
from luci_web.clusters.edits.fence_devices import public_attrs

Attrs = Mapping[str, str | None]
SECTIONS = ("cman", "totem", "quorumd", "fence_daemon", "logging")
HEURISTIC_ATTRS = ("program", "score", "interval", "tko")


def settings_dict(conf: ClusterConf) -> dict[str, Any]:
    """Each section's attributes (secrets left out), plus cman's multicast_addr, quorumd's heuristics and
    logging's daemons (name -> attributes). An absent section is {}."""
    def attrs_of(element: Any) -> dict[str, str]:
        return public_attrs(dict(element.attrib))[0] if element is not None else {}

    out: dict[str, Any] = {section: attrs_of(conf.section(section)) for section in SECTIONS}
    cman = conf.section("cman")
    multicast = cman.find("multicast") if cman is not None else None
    out["cman"]["multicast_addr"] = multicast.get("addr") if multicast is not None else None
    quorumd = conf.section("quorumd")
    out["quorumd"]["heuristics"] = [attrs_of(e) for e in quorumd if e.tag == "heuristic"] \
        if quorumd is not None else []
    logging = conf.section("logging")
    out["logging"]["daemons"] = {e.get("name", ""): {k: v for k, v in attrs_of(e).items() if k != "name"}
                                 for e in logging if e.tag == "logging_daemon"} if logging is not None else {}
    return out


# -- edit functions ------------------------------------------------------------------------------------------
def set_general(sections: dict[str, dict[str, str | None]], multicast: str | None) -> Callable[[ClusterConf], None]:
    def apply(conf: ClusterConf) -> None:
        for section, attrs in sections.items():
            if conf.section(section) is not None or any(v is not None for v in attrs.values()):
                edit.set_section_attrs(conf, section, attrs)
        edit.set_multicast(conf, multicast)
    return apply


def set_quorum_disk(attrs: Attrs, heuristics: list[dict[str, str]]) -> Callable[[ClusterConf], None]:
    """quorumd attributes; heuristics kept by program (their other attributes stay), dropped ones removed, new
    ones appended."""
    def apply(conf: ClusterConf) -> None:
        quorumd = edit.set_section_attrs(conf, "quorumd", attrs)
        wanted = {h["program"]: h for h in heuristics}
        for element in [e for e in quorumd if e.tag == "heuristic"]:
            if element.get("program") not in wanted:
                edit.remove_heuristic(conf, element.get("program", ""))
        present = {e.get("program"): e for e in quorumd if e.tag == "heuristic"}
        for program, h in wanted.items():
            element = present.get(program)
            if element is None:
                element = edit.add_heuristic(conf, program)
            for attr in ("score", "interval", "tko"):
                if h[attr]:
                    element.set(attr, h[attr])
                else:
                    element.attrib.pop(attr, None)
        conf.mark_edited()
    return apply


def set_logging(attrs: Attrs) -> Callable[[ClusterConf], None]:
    def apply(conf: ClusterConf) -> None:
        edit.set_section_attrs(conf, "logging", attrs)
    return apply


def set_logging_daemon(name: str, attrs: Attrs) -> Callable[[ClusterConf], None]:
    """Per-daemon settings; all blank removes the daemon's <logging_daemon> (the global settings apply)."""
    def apply(conf: ClusterConf) -> None:
        logging = conf.section("logging")
        exists = logging is not None and any(e.tag == "logging_daemon" and e.get("name") == name for e in logging)
        if all(v is None for v in attrs.values()):
            if exists:
                edit.remove_logging_daemon(conf, name)
            return
        edit.set_logging_daemon(conf, name, attrs)
    return apply


def patch_settings(sections: Mapping[str, Attrs], *, multicast: tuple[str | None] | None = None,
                   heuristics: list[dict[str, str]] | None = None,
                   daemons: Mapping[str, Attrs | None] | None = None,
                   removed: Iterable[str] = ()) -> Callable[[ClusterConf], None]:
    """Change only what is named: `sections` section -> attributes (None removes one; a section that does not
    exist is created only when a value is set), `multicast` (a 1-tuple: its value, None removes it), `heuristics`
    (the whole list, as set_quorum_disk), `daemons` name -> attributes (merged; None removes the daemon's
    settings), `removed` sections removed whole (when present: their defaults apply)."""
    def apply(conf: ClusterConf) -> None:
        for section in removed:
            if conf.section(section) is not None:
                edit.remove_section(conf, section)
        for section, attrs in sections.items():
            if section == "quorumd" and heuristics is not None:
                set_quorum_disk(attrs, heuristics)(conf)
            elif conf.section(section) is not None or any(v is not None for v in attrs.values()):
                edit.set_section_attrs(conf, section, attrs)
        if heuristics is not None and "quorumd" not in sections:
            set_quorum_disk({}, heuristics)(conf)
        if multicast is not None:
            edit.set_multicast(conf, multicast[0])
        for name, attrs in (daemons or {}).items():
            logging = conf.section("logging")
            exists = logging is not None and any(e.tag == "logging_daemon" and e.get("name") == name
                                                 for e in logging)
            if attrs is None:
                if exists:
                    edit.remove_logging_daemon(conf, name)
            elif exists or any(v is not None for v in attrs.values()):
                edit.set_logging_daemon(conf, name, attrs)
        conf.mark_edited()
    return apply
