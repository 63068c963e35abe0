"""What the command-line tools share: the default config path, argument parsing without SystemExit or
tracebacks, one-line error reporting, secret masking and JSON output."""
from __future__ import annotations

import argparse
import os
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


def parse_int_option(flag: str, value: str, *, minimum: int = 0) -> int:
    """An integer option value, with ccs_tool's messages for a non-integer or negative value."""
    try:
        number = int(value, 10)
    except ValueError:
        raise UsageError(f"argument to {flag} ({value}) is not an integer") from None
    if number < minimum:
        if minimum == 0:
            raise UsageError(f"argument to {flag} cannot be negative")
        raise UsageError(f"argument to {flag} must be at least {minimum}")
    return number
