"""One way for every console script to fail: a single line ``PROG: what is wrong; what to do``.

Exit status 2 for usage errors (a bad option, model path, params file, instruction or image:
``UsageError`` and argparse errors), 1 for runtime errors (anything else), 130 for Ctrl-C and
143 for SIGTERM where the program asked for it (:func:`terminate_like_ctrl_c`).
``--debug`` on the command line, or ``INTERNVLA_S2_DEBUG=1``, prints the traceback as well; the
setting is passed on, through the environment, to the processes a program starts.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import traceback
from collections.abc import Sequence

DEBUG_ENV = "INTERNVLA_S2_DEBUG"
DEBUG_HELP = f"on an error, print the traceback too (or set {DEBUG_ENV}=1)"
MAX_LINE = 600
# Exceptions whose message already says what is wrong (checked by class name: no heavy imports here).
EXPECTED = {"CheckpointError", "DataError", "NoOpenGL", "EpisodeFormatError", "InvalidFrame", "TemplateError",
            "NotRecordable", "PolicyFailure", "FileNotFoundError", "PermissionError", "IsADirectoryError",
            "NotADirectoryError", "S2StartFailure", "StaleResults"}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C so cleanup runs (see :func:`terminate_like_ctrl_c`)."""


def terminate_like_ctrl_c() -> None:
    """From now on SIGTERM raises Terminated in the main thread (exit 143 through :func:`guarded`)."""
    import signal

    def handler(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)


class UsageError(Exception):
    """Input the user gave cannot be used (exit 2); the message says what is wrong and what to do."""


class CliError(Exception):
    """An expected runtime failure (exit 1); the message says what is wrong and what to do."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with ``--debug`` and one-line usage errors (raised as UsageError, so the guard prints them)."""

    def __init__(self, *args, **kwargs):
        if kwargs.get("description"):
            kwargs["description"] = kwargs["description"].replace("``", "")  # docstrings are RST; help is plain text
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true", help=DEBUG_HELP)

    def error(self, message):
        raise UsageError(f"{message}; see {self.prog} --help")


def debug_requested(argv: Sequence[str] | None) -> bool:
    """``--debug`` before any ``--ros-args``, or INTERNVLA_S2_DEBUG=1."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--ros-args" in args:
        args = args[: args.index("--ros-args")]
    return "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def one_line(prog: str, exc: BaseException, debug: bool = False) -> str:
    """``PROG: message`` on one line; unexpected exception types are named and point at --debug."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    names = {c.__name__ for c in type(exc).__mro__}
    if not names & (EXPECTED | {"UsageError", "CliError"}):
        message = f"{type(exc).__name__}: {message}"
        if not debug:
            message += "; rerun with --debug for the traceback"
    if len(message) > MAX_LINE:
        message = message[: MAX_LINE - 3] + "..."
    return f"{prog}: {message}"


def exit_code(exc: BaseException) -> int:
    return 2 if isinstance(exc, UsageError) else 1


def guarded(prog: str):
    """Decorator for a console script's ``main(argv=None, ...)``: errors become one line and an exit code."""

    def decorate(main):
        @functools.wraps(main)
        def wrapper(argv=None, *args, **kwargs):
            debug = debug_requested(argv)
            if debug:
                os.environ[DEBUG_ENV] = "1"
            try:
                return main(argv, *args, **kwargs)
            except KeyboardInterrupt as exc:
                terminated = isinstance(exc, Terminated)
                print(f"{prog}: {'terminated' if terminated else 'interrupted'}",
                      file=sys.stderr)
                return 143 if terminated else 130
            except Exception as exc:  # noqa: BLE001 (the point: every error ends as one line)
                if debug:
                    traceback.print_exc()
                print(one_line(prog, exc, debug), file=sys.stderr, flush=True)
                return exit_code(exc)

        return wrapper

    return decorate
