"""ccs_config_validate: check a cluster.conf against the schema, the semantic rules and the lint rules.

Exit status: 0 valid (warnings allowed), 1 invalid, unreadable or malformed, 2 usage error. See docs/cli.md.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from cluster_conf.cli.common import CliError, Parser, default_config_path, print_json, run

if TYPE_CHECKING:
    import argparse

    from cluster_conf.reports import Report

PROG = "ccs_config_validate"
EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
VALID_MESSAGE = "Configuration validates"
INVALID_MESSAGE = "Configuration fails to validate"


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        usage_exit_code=EXIT_USAGE,
        description="Validate a cluster.conf: RelaxNG schema, semantic checks and lint.",
        epilog=f"The default file is {default_config_path()} ($CLUSTER_ROOT/etc/cluster/cluster.conf).",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-f", "--file", dest="file", metavar="FILE", help="the file to validate")
    source.add_argument("-l", dest="file", metavar="FILE", help="same as -f (the original's 'local file' option)")
    parser.add_argument("-v", "--verbose", action="store_true", help="add each report's hint")
    parser.add_argument("-q", "--quiet", action="store_true", help='do not print "Configuration validates"')
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--no-lint", action="store_true", help="schema and semantic checks only, no lint warnings")
    parser.add_argument(
        "--print-schema", action="store_true", help="print the RelaxNG schema (for xmllint --relaxng) and exit"
    )
    parser.add_argument("-V", "--version", action="store_true", help="print the version and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    opts = build_parser().parse_args(argv)
    if opts.version:
        from cluster_conf.cli.common import version_text

        sys.stdout.write(version_text(PROG))
        return EXIT_VALID
    if opts.print_schema:
        sys.stdout.write(_schema_text())
        return EXIT_VALID
    path = opts.file or default_config_path()
    reports, readable = _check(path, lint=not opts.no_lint)
    valid = readable and not any(r.is_error for r in reports)
    if opts.json:
        print_json({"file": path, "valid": valid, "reports": [r.to_dict() for r in reports]})
    else:
        _print_text(path, reports, valid, opts)
    return EXIT_VALID if valid else EXIT_INVALID


def _check(path: str, *, lint: bool) -> tuple[list[Report], bool]:
    """(reports, readable): a file that cannot be read or parsed yields its one report and readable=False."""
    from cluster_conf import ClusterConf, ConfigError, validate

    try:
        conf = ClusterConf.load(path)
    except ConfigError as exc:
        return [exc.report], False
    return validate(conf, lint=lint), True


def _print_text(path: str, reports: list[Report], valid: bool, opts: argparse.Namespace) -> None:
    for report in reports:
        shown = report if opts.verbose else replace(report, hint=None)
        sys.stdout.write(shown.format(path) + "\n")
    if not valid:
        sys.stdout.write(INVALID_MESSAGE + "\n")
    elif not opts.quiet:
        sys.stdout.write(VALID_MESSAGE + "\n")


def _schema_text() -> str:
    try:
        from cluster_conf import rng
    except ImportError:
        raise CliError("the RelaxNG schema is not available in this build", exit_code=EXIT_INVALID) from None
    text = rng.schema_text() if hasattr(rng, "schema_text") else None
    if not isinstance(text, str):
        raise CliError("the RelaxNG schema is not available in this build", exit_code=EXIT_INVALID)
    return text if text.endswith("\n") else text + "\n"


if __name__ == "__main__":
    sys.exit(main())
