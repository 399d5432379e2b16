"""The ``autoprumux`` command: the group, its commands, and the one place where errors become
exit codes (``main``, the console script's entry point).

The commands live by what they work on: :mod:`~autoprumux.cli.results_commands` (predict,
evaluate, report: recorded trials), :mod:`~autoprumux.cli.search_commands` (search,
dashboard), :mod:`~autoprumux.cli.study_commands` (train, warmup, measure: the engine on one
study) and :mod:`~autoprumux.cli.model_commands` (classify, export: a trained model); the
options they share are declared once in :mod:`~autoprumux.cli.options`.

Every user mistake (an :class:`AutoPruMuxError` or a usage error) becomes one line on stderr
and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

import click

from autoprumux.cli.init_command import init
from autoprumux.cli.model_commands import classify, export
from autoprumux.cli.results_commands import evaluate, predict, report
from autoprumux.cli.search_commands import dashboard, search
from autoprumux.cli.study_commands import measure, train, warmup
from autoprumux.core.errors import AutoPruMuxError
from autoprumux.core.version import __version__

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="autoprumux", help="Print the version and exit.")
def cli() -> None:
    """Find the fastest multiplexed (N) and pruned (s) BERT within an accuracy budget."""


# the commands import what they use (the search, report and engine adapters: Optuna, Ray,
# plotly, torch) when they run, so `autoprumux --help` and the core stay light
COMMANDS = (search, predict, evaluate, report, dashboard, train, warmup, measure, classify, export)
for _command in COMMANDS:
    cli.add_command(_command)
cli.add_command(init)  # a study file from the user's data (issue 34)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    try:
        # standalone_mode=False: click returns or raises instead of exiting, so the errors
        # below are turned into one line here, and a command's int return is the exit code
        result = cli.main(args=argv, prog_name="autoprumux", standalone_mode=False)
    except AutoPruMuxError as err:
        return _fail(str(err), err.exit_code)
    except click.exceptions.Exit as exit_:  # --help, --version
        return exit_.exit_code
    except click.exceptions.NoArgsIsHelpError as err:  # `autoprumux` alone: the whole help
        print(err.format_message(), file=sys.stderr)
        return EXIT_USER_ERROR
    except click.ClickException as err:
        # some of click's messages span lines ("Missing option '--format'. Choose from:" and
        # a choice a line): one line, every choice kept
        return _fail(" ".join(err.format_message().split()))
    except (click.Abort, KeyboardInterrupt):
        print("autoprumux: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) else 0


def console_main() -> NoReturn:
    """The console script (and ``python -m autoprumux``): exits with :func:`main`'s code. After
    a Ctrl-C it exits at once, without waiting for CPU trials still training in threads of this
    process (they cannot be stopped): the study has closed them as interrupted, as a kill would
    leave them, and their checkpoints resume them in the rerun. SIGTERM (``kill``, a job
    scheduler's stop) stops it as a Ctrl-C does."""
    signal.signal(signal.SIGTERM, _terminated)
    code = main()
    if code == EXIT_INTERRUPTED:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _terminated(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt  # where the Python code is at: its cleanups run, as on a Ctrl-C


def _fail(message: str, code: int = EXIT_USER_ERROR) -> int:
    print(f"autoprumux: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    console_main()
