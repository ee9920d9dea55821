"""What every command shares: project errors as one line and an exit status, a result echoed as its text
or its JSON document, and the options several commands take."""
from __future__ import annotations

import functools
import shlex
import sys
from pathlib import Path

import click

from ..errors import LipsyncBenchError
from ..rendering import Result

DEFAULT_RESULTS = "results"


def friendly(fn):
    """Project errors become one line on stderr and a non-zero exit (2 for a bad option, as click's own
    usage errors), never a traceback; Ctrl-C says how to resume."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LipsyncBenchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted: finished videos are stored; run the same command again to resume",
                       err=True)
            sys.exit(130)

    return wrapper


def emit(result: Result, as_json: bool = False, **text_options) -> None:
    """Print a result: its notices on stderr, then its JSON document or its text, then its error; exit
    with its status when that is not 0."""
    for line in result.notices:
        click.echo(line, err=True)
    text = result.json_text() if as_json else result.text(**text_options)
    if text:
        click.echo(text)
    if result.error:
        click.echo(f"error: {result.error}", err=True)
    if result.exit_code:
        sys.exit(result.exit_code)


def command_line() -> str:
    """The command line as typed, recorded with a session."""
    return shlex.join(["lipsync-bench", *sys.argv[1:]])


def json_option(fn):
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of text.")(fn)


def quiet_option(fn):
    return click.option("--quiet", is_flag=True, help="No progress bar.")(fn)


def device_option(fn):
    return click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")(fn)


def existing_folder(**kwargs) -> click.Path:
    return click.Path(exists=True, file_okay=False, path_type=Path, **kwargs)


def existing_file(**kwargs) -> click.Path:
    return click.Path(exists=True, dir_okay=False, path_type=Path, **kwargs)
