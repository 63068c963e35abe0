"""python -m bench: time load, validation, editing, diff and save on the generated 1000-node configuration.

Each case runs once untimed (warm-up), then `--runs` times; the table shows the median, min and max wall time
and the target beside it. Work files live in a temporary directory that is removed at the end. A piece that is
not available (validation, edit API, ccs_tool) gives an "n/a (missing: ...)" row instead of an error.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree

from bench.generate import BENCH_SIZE, REFERENCE_SIZE, SMALL_SIZE, Size, generate, variant
from cluster_conf import ClusterConf
from cluster_conf.diff import diff

SUBPROCESS_TIMEOUT = 120  # seconds, per ccs_tool run


# -- timing ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Stats:
    runs: int
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, seconds: list[float]) -> Stats:
        return cls(len(seconds), statistics.median(seconds), min(seconds), max(seconds))


@dataclass(slots=True)
class Row:
    case: str
    target_ms: float | None = None
    stats: Stats | None = None
    note: str = ""  # "n/a (missing: ...)" or a failure, when stats is None; extra facts otherwise

    @property
    def verdict(self) -> str:
        if self.stats is None or self.target_ms is None:
            return ""
        return "ok" if self.stats.median * 1000 <= self.target_ms else "OVER"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"case": self.case, "target_ms": self.target_ms, "note": self.note}
        if self.stats is not None:
            data.update(
                runs=self.stats.runs,
                median_ms=round(self.stats.median * 1000, 1),
                min_ms=round(self.stats.low * 1000, 1),
                max_ms=round(self.stats.high * 1000, 1),
            )
        return data


def measure(action: Callable[[], object], runs: int, setup: Callable[[], object] | None = None) -> Stats:
    """Wall time of `action` over `runs` runs after one warm-up; `setup` runs before each, untimed."""
    times: list[float] = []
    for i in range(runs + 1):
        if setup is not None:
            setup()
        start = time.perf_counter()
        action()
        elapsed = time.perf_counter() - start
        if i:  # the first run is the warm-up
            times.append(elapsed)
    return Stats.of(times)


def missing(*modules: str) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


# -- machine -----------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version(parts: tuple[int, ...]) -> str:
    return ".".join(map(str, parts))


def machine() -> list[tuple[str, str]]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return [
        ("CPU", cpu_model()),
        ("cores", f"{os.cpu_count()} ({usable} usable)"),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("lxml", version(etree.LXML_VERSION)),
        ("libxml2", f"{version(etree.LIBXML_VERSION)} (compiled against {version(etree.LIBXML_COMPILED_VERSION)})"),
        ("load average", " ".join(f"{x:.2f}" for x in load) if load else "unknown"),
    ]


# -- cases -------------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Workspace:
    """The generated files and the options every case shares."""

    directory: Path
    runs: int
    size: Size
    original: Path = field(init=False)
    second: Path = field(init=False)
    reindented: Path = field(init=False)

    def __post_init__(self) -> None:
        data = generate(self.size)
        self.original = self.directory / "cluster.conf"
        self.original.write_bytes(data)
        self.second = self.directory / "cluster.conf.next"
        self.second.write_bytes(variant(data))
        self.reindented = self.directory / "cluster.conf.tabs"
        root = etree.fromstring(data)
        etree.indent(root, space="\t")
        self.reindented.write_bytes(etree.tostring(root, xml_declaration=True))

    def fresh_copy(self, name: str) -> Path:
        target = self.directory / name
        shutil.copyfile(self.original, target)
        return target


def case_load(ws: Workspace) -> list[Row]:
    stats = measure(lambda: ClusterConf.load(ws.original), ws.runs)
    return [Row("load (parse)", None, stats, f"{ws.original.stat().st_size / 1024:.0f} KiB")]


def case_validate(ws: Workspace) -> list[Row]:
    """The issue's target is load + schema + semantic validation; lint is measured on top, without a target."""
    names = ("load + schema + semantic validation", "load + validate + lint (ccs_config_validate's work)")
    absent = missing("cluster_conf.validation")
    if absent:
        return [Row(name, None, note=f"n/a (missing: {', '.join(absent)})") for name in names]
    from cluster_conf import validate

    def load_and_validate(lint: bool) -> list:
        return validate(ClusterConf.load(ws.original), lint=lint)

    reports = load_and_validate(True)
    errors = sum(r.is_error for r in reports)
    codes = Counter(r.code for r in reports)
    summary = f"{errors} errors, {len(reports) - errors} warnings" + (f" ({', '.join(sorted(codes))})" if codes else "")
    rows = [
        Row(names[0], 250, measure(lambda: load_and_validate(False), ws.runs)),
        Row(names[1], None, measure(lambda: load_and_validate(True), ws.runs), summary),
    ]
    return rows + validation_breakdown(ws)


def validation_breakdown(ws: Workspace) -> list[Row]:
    """The parts of validate(), timed separately when the validation module exposes them (best effort)."""
    try:
        from cluster_conf import lint, rng, structure, validation

        conf = ClusterConf.load(ws.original)
        walk = structure.check(conf)
        limit = getattr(validation, "RELAXNG_AUTO_LIMIT", None)
        skipped = limit is not None and ws.original.stat().st_size > limit
        relaxng_note = f"not run by validate() above {limit} bytes; shown for reference" if skipped else ""
        parts: list[tuple[str, Callable[[], object], str]] = [
            ("  structure pass (schema rules in Python)", lambda: structure.check(conf), ""),
            ("  RelaxNG (libxml2)", lambda: rng.is_valid(conf), relaxng_note),
            ("  semantic checks", lambda: validation.SemanticCheck(conf, walk.inventory).run(), ""),
            ("  lint", lambda: lint.check(conf, walk.inventory), ""),
        ]
    except Exception as exc:  # the parts are internal: report, do not fail the whole run
        return [Row("  breakdown", note=f"n/a ({type(exc).__name__}: {exc})")]
    return [Row(name, None, measure(action, ws.runs), note) for name, action, note in parts]


def ccs_tool_path() -> Path | None:
    beside = Path(sys.executable).parent / "ccs_tool"
    if beside.exists():
        return beside
    found = shutil.which("ccs_tool")
    return Path(found) if found else None


def case_ccs_tool(ws: Workspace) -> list[Row]:
    name = "ccs_tool addnode (subprocess, wall)"
    tool = ccs_tool_path()
    if tool is None or missing("cluster_conf.cli.ccs_tool"):
        return [Row(name, note="n/a (missing: ccs_tool)")]
    target = ws.directory / "ccs_tool.conf"
    command = [str(tool), "addnode", "-c", str(target), "-n", "100001", "-v", "1", "-f", "ipmi-0001",
               "bench-new.example.com", "lanplus=1"]
    failures: list[str] = []

    def run() -> None:
        done = subprocess.run(command, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, check=False)
        if done.returncode != 0:
            failures.append(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}")

    stats = measure(run, ws.runs, setup=lambda: shutil.copyfile(ws.original, target))
    if failures:
        return [Row(name, note=f"failed: {failures[0]}")]
    return [Row(name, None, stats, "includes Python start-up")]


def case_edit_and_save(ws: Workspace) -> list[Row]:
    """The edit itself (a transaction adding a node) plus the atomic save, on a config already in memory; and,
    without a target, the whole in-process path ccs_tool takes (load, edit, validate the result, save)."""
    absent = missing("cluster_conf.edit", "cluster_conf.validation")
    names = (
        "edit-and-save (add_node in a transaction + atomic save)",
        "load + edit + validate + save (ccs_tool's path, in process)",
    )
    if absent:
        return [Row(name, None, note=f"n/a (missing: {', '.join(absent)})") for name in names]
    from cluster_conf import edit, validate

    target = ws.directory / "edit.conf"
    loaded: list[ClusterConf] = []

    def add_node(conf: ClusterConf) -> None:
        with conf.transaction():
            edit.add_node(conf, "bench-new.example.com", nodeid=100001, votes=1, fence_device="ipmi-0001")

    def fresh() -> None:
        shutil.copyfile(ws.original, target)
        loaded[:] = [ClusterConf.load(target)]

    def edit_and_save() -> None:
        add_node(loaded[0])
        loaded[0].save(target)

    def whole_path() -> None:
        conf = ClusterConf.load(target)
        add_node(conf)
        if any(r.is_error for r in validate(conf, lint=False)):
            raise RuntimeError("the edit made the configuration invalid")
        conf.save(target)

    return [
        Row(names[0], 150, measure(edit_and_save, ws.runs, setup=fresh)),
        Row(names[1], None, measure(whole_path, ws.runs, setup=fresh), "validation dominates; see above"),
    ]


def case_diff(ws: Workspace) -> list[Row]:
    old, new = ClusterConf.load(ws.original), ClusterConf.load(ws.second)
    result = diff(old, new)
    note = f"{len(result.changes)} changes, {len(result.affected)} services affected"
    rows = [Row("diff of two versions (~1% of services changed)", 200, measure(lambda: diff(old, new), ws.runs), note)]
    same = ClusterConf.load(ws.reindented)
    rows.append(
        Row("diff, worst case (same content re-indented)", None, measure(lambda: diff(old, same), ws.runs),
            "no subtree can be skipped")
    )
    return rows


def case_save(ws: Workspace) -> list[Row]:
    conf = ClusterConf.load(ws.original)
    # Force a real serialization each run: unedited (or just saved) documents write their bytes back as they are.
    target = ws.directory / "saved.conf"
    return [
        Row("serialize (to_bytes, edited tree)", None, measure(conf.to_bytes, ws.runs, setup=conf.mark_edited)),
        Row(
            "save (serialize + atomic write + fsync)",
            None,
            measure(lambda: conf.save(target), ws.runs, setup=conf.mark_edited),
        ),
    ]


CASES: tuple[Callable[[Workspace], list[Row]], ...] = (
    case_load,
    case_validate,
    case_ccs_tool,
    case_edit_and_save,
    case_diff,
    case_save,
)


def run_case(case: Callable[[Workspace], list[Row]], ws: Workspace) -> list[Row]:
    try:
        return case(ws)
    except Exception as exc:  # one broken piece must not hide the other figures
        return [Row(case.__name__.removeprefix("case_"), note=f"failed: {type(exc).__name__}: {exc}")]


# -- output ------------------------------------------------------------------------------------------------
def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def table(rows: list[Row]) -> str:
    header = ("case", "median ms", "min ms", "max ms", "target ms", "", "notes")
    body = []
    for row in rows:
        target = f"<= {row.target_ms:g}" if row.target_ms is not None else ""
        if row.stats is None:
            body.append((row.case, "", "", "", target, "", row.note))
        else:
            s = row.stats
            body.append((row.case, ms(s.median), ms(s.low), ms(s.high), target, row.verdict, row.note))
    widths = [max(len(r[i]) for r in (header, *body)) for i in range(len(header))]
    lines = []
    for i, line in enumerate((header, *body)):
        cells = [
            cell.ljust(width) if j in (0, 5, 6) else cell.rjust(width)
            for j, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs per case (default 7)")
    parser.add_argument("--small", action="store_true", help="use the 10-node test size (a quick smoke run)")
    parser.add_argument("--json", metavar="FILE", help="also write the machine and the rows as JSON")
    args = parser.parse_args(argv)
    runs = max(1, min(args.runs, 1000))
    shapes = [("small", SMALL_SIZE)] if args.small else [("reference", REFERENCE_SIZE), ("rich", BENCH_SIZE)]

    info = machine()
    for key, value in info:
        print(f"{key + ':':14} {value}")
    print(f"{'runs:':14} {runs} timed runs per case after one warm-up")
    results: dict[str, list[dict]] = {}
    for label, size in shapes:
        rows: list[Row] = []
        with tempfile.TemporaryDirectory(prefix="rhcs-bench-") as tmp:
            ws = Workspace(Path(tmp), runs, size)
            print(f"\n== {label} config: {describe(size)}, {ws.original.stat().st_size / 1024:.0f} KiB")
            for case in CASES:
                rows.extend(run_case(case, ws))
        print(table(rows))
        results[label] = [r.to_dict() for r in rows]
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": dict(info), "configs": results}, indent=2))
    return 0


def describe(size: Size) -> str:
    shape = "rich shape: two fence methods per node, NFS exports with clients, apache, vms" if size.rich else (
        "reference shape of stack-notes §4: one fence method per node, services = ip ref + fs + nested script"
    )
    return (
        f"{size.nodes} nodes, {size.fence_devices} fence devices, {size.domains} domains, "
        f"{size.services} resource groups ({shape})"
    )


if __name__ == "__main__":
    raise SystemExit(main())
