"""What the command-line tools share: the default config path, argument parsing without SystemExit or
tracebacks, one-line error reporting, secret masking and JSON output."""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn

CONFIG_RELATIVE_PATH = "etc/cluster/cluster.conf"
SECRET_MASK = "********"
DEBUG_ENV = "RHCS_CLI_DEBUG"  # set to 1 to get the Python traceback of an unexpected error


def default_config_path(environ: Mapping[str, str] | None = None) -> str:
    """`$CLUSTER_ROOT/etc/cluster/cluster.conf`, CLUSTER_ROOT defaulting to `/`."""
    env = os.environ if environ is None else environ
    root = env.get("CLUSTER_ROOT") or "/"
    return os.path.join(root, CONFIG_RELATIVE_PATH)


class CliError(Exception):
    """A failure to report as `prog: message` (plus optional detail lines) with an exit status."""

    def __init__(self, message: str, *, exit_code: int = 1, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.details = tuple(details)


class UsageError(CliError):
    """Bad command line: unknown command or option, missing argument, bad option value."""


class _ParserExit(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main() decides the message and the exit status."""

    def __init__(self, *args: Any, usage_exit_code: int = 1, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        self.usage_exit_code = usage_exit_code

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; try '{self.prog} -h'", exit_code=self.usage_exit_code)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _ParserExit(status)


def suite_version() -> str:
    """The installed suite's version (the `rhcs-py` distribution), "unknown" when it is not installed."""
    from importlib import metadata

    try:
        return metadata.version("rhcs-py")
    except metadata.PackageNotFoundError:
        return "unknown"


def version_text(prog: str) -> str:
    """What `-V` prints: `<prog> <suite version> (rhcs-py)`."""
    return f"{prog} {suite_version()} (rhcs-py)\n"


def run(prog: str, body: Callable[[list[str]], int], argv: Sequence[str] | None) -> int:
    """Run `body(argv)`; turn every failure into one line on stderr and an exit status, never a traceback."""
    from cluster_conf.reports import ConfigError

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return body(args)
    except _ParserExit as exc:
        return exc.status
    except CliError as exc:
        print_error(prog, exc.message, exc.details)
        return exc.exit_code
    except ConfigError as exc:
        print_error(prog, str(exc))
        return 1
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug or an OS failure: still one line, the traceback only on request
        if os.environ.get(DEBUG_ENV) == "1":
            raise
        print_error(prog, f"unexpected error: {type(exc).__name__}: {one_line(str(exc))}")
        return 1


def print_error(prog: str, message: str, details: Iterable[str] = ()) -> None:
    sys.stderr.write(f"{prog}: {message}\n")
    for line in details:
        sys.stderr.write(f"  {line}\n")


def warn(prog: str, message: str) -> None:
    sys.stderr.write(f"{prog}: warning: {message}\n")


def one_line(text: str) -> str:
    return " ".join(text.split())


def _silence_stdout() -> None:
    """After EPIPE (`ccs_tool lsnode | head`), point stdout at /dev/null so the exit flush does not fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# -- secrets and properties ---------------------------------------------------------------------------------
def mask(name: str, value: str) -> str:
    """The value to show for attribute `name`: secrets (passwd, password, ...) become ********."""
    from cluster_conf.schema import is_secret

    return SECRET_MASK if is_secret(name) else value


def masked(attrs: Mapping[str, str], skip: Iterable[str] = ()) -> dict[str, str]:
    skipped = set(skip)
    return {k: mask(k, v) for k, v in attrs.items() if k not in skipped}


def format_properties(attrs: Mapping[str, str], skip: Iterable[str] = ()) -> str:
    """`k=v k=v` in document order, secrets masked."""
    return " ".join(f"{k}={v}" for k, v in masked(attrs, skip).items())


# -- output -------------------------------------------------------------------------------------------------
def print_json(data: object) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


_ASCII_INTEGER = re.compile(r"-?[0-9]+")


def parse_int_option(flag: str, value: str, *, minimum: int = 0) -> int:
    """An integer option value, with ccs_tool's messages for a non-integer or negative value.

    Only ASCII digits with an optional leading '-' are integers: int() alone would also take ' 10', '1_0', '+5'
    and other scripts' digits ('١٠')."""
    if not _ASCII_INTEGER.fullmatch(value):
        raise UsageError(f"argument to {flag} ({printable(value)}) is not an integer")
    try:
        number = int(value, 10)
    except ValueError:  # more digits than int() converts
        raise UsageError(f"argument to {flag} ({printable(value)}) is not an integer") from None
    if number < minimum:
        if minimum == 0:
            raise UsageError(f"argument to {flag} cannot be negative")
        raise UsageError(f"argument to {flag} must be at least {minimum}")
    return number


# -- command-line text that goes into the XML document ------------------------------------------------------
# An attribute or element name: the XML Name production without ':' (no namespaces in cluster.conf), ASCII only.
XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
# Characters XML 1.0 does not allow: C0 controls other than tab, LF and CR; lone surrogates (how Python hands
# over argument bytes that are not UTF-8); U+FFFE and U+FFFF.
_NOT_XML_CHAR = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
NAME_RULE = "names start with a letter or '_' and contain only ASCII letters, digits, '_', '.' and '-'"


def printable(text: str) -> str:
    """`text` for an error message: control characters and undecodable bytes escaped (\\x01, \\udcff)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def xml_char_problem(text: str) -> str | None:
    """What keeps `text` out of an XML document (`a control character`, ...), or None if it can go in."""
    found = _NOT_XML_CHAR.search(text)
    if found is None:
        return None
    char = found.group()
    if "\udc80" <= char <= "\udcff":
        return "a byte that is not valid UTF-8"
    if char < " ":
        return "a control character"
    return "a character XML does not allow"


def check_text(label: str, value: str) -> str:
    """`value`, refused with `<label> 'value' contains a control character` if XML cannot hold it."""
    problem = xml_char_problem(value)
    if problem:
        raise UsageError(f"{label} '{printable(value)}' contains {problem}")
    return value


def check_name(label: str, value: str) -> str:
    """`value` as an element or attribute name, refused with `invalid <label> 'value': <the rule>`."""
    if not XML_NAME.fullmatch(value):
        raise UsageError(f"invalid {label} '{printable(value)}': {NAME_RULE}")
    return value


def parse_pair_list(tokens: Iterable[str], *, what: str = "attribute name") -> list[tuple[str, str]]:
    """`key=value` arguments, in order, each key a valid XML name and each value text XML can hold.

    A refusal names the argument but never shows the value of a secret (passwd=..., see schema.is_secret)."""
    from cluster_conf.schema import is_secret

    pairs = []
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise UsageError(f"option '{printable(token)}' is not opt=value pair")
        check_name(what, key)
        problem = xml_char_problem(value)
        if problem:
            shown = "" if is_secret(key) else f" ('{printable(value)}')"
            raise UsageError(f"the value of {key}{shown} contains {problem}")
        pairs.append((key, value))
    return pairs


def parse_pairs(tokens: Iterable[str], *, what: str = "attribute name") -> dict[str, str]:
    """`key=value` arguments as a dict in order (a repeated key keeps its last value); see parse_pair_list."""
    return dict(parse_pair_list(tokens, what=what))
