"""The `deita` command's entry: the command table, the top-level group and the error policy.

Errors: a usage mistake (unknown option or command, missing option, a value of the wrong type) prints
click's short usage error and exits 2; a value out of range, a bad config file, a bad record or an
environment problem prints one `error:` line and exits 1; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import signal
import sys

import click

from deita.data import atomic
from deita.errors import DeitaError

from .flags import CONTEXT

_state = {"debug": False}

COMMANDS: dict[str, str] = {
    "validate": "deita.cli.data:validate_command",
    "convert": "deita.cli.data:convert_command",
    "score": "deita.cli.stages:score_command",
    "embed": "deita.cli.stages:embed_command",
    "filter": "deita.cli.selection:filter_command",
    "select": "deita.cli.selection:select_command",
    "report": "deita.cli.selection:report_command",
    "probe": "deita.cli.probe:probe_command",
    "evol": "deita.cli.evol:evol_command",
    "rank": "deita.cli.evol:rank_command",
    "train": "deita.cli.training:train_command",
    "dpo-data": "deita.cli.training:dpo_data_command",
    "dedup": "deita.cli.data:dedup_command",
    "decontaminate": "deita.cli.data:decontaminate_command",
    "serve": "deita.serve.command:serve_command",
}
"""Command name → "module:factory" of the function that builds it; a new command is one line here. The
factory runs only when its command is asked for (or listed by --help): building flags imports the configs."""


class LazyGroup(click.Group):
    """Builds a command's flags only when that command runs (they import the config modules)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, _, factory = COMMANDS[name].partition(":")
        return getattr(importlib.import_module(module), factory)()


@click.group(cls=LazyGroup, context_settings=CONTEXT, invoke_without_command=False, no_args_is_help=False,
             help="Deita: pick the few thousand best instruction-tuning samples from a large pool "
                  "(complexity × quality scores, diversity-aware selection).")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
def app(debug: bool) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("deita").setLevel(logging.DEBUG if debug else logging.INFO)
    if not debug:
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning)  # libraries' deprecation notes are not for users
        # read by transformers and the hub when a stage first imports them: importing transformers here
        # would add seconds to every command, convert, validate and filter included. The hub's setting also
        # hides its "Loading weights" / "Writing model shards" bars: deita prints its own progress
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        if "transformers" in sys.modules:
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
        if "huggingface_hub" in sys.modules:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()


def _error(message: str) -> None:
    click.echo(f"error: {message}", err=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl+C so every writer's cleanup runs; the command exits 130 like an interrupt."""


def _terminate(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    _state["terminated"] = True
    raise Terminated


def _stopped(terminated: bool) -> None:
    """SIGINT or SIGTERM (both exit 130, an interrupt): temporary files removed, one line."""
    atomic.remove_all()
    what = "terminated (SIGTERM)" if terminated else "interrupted"
    _error(f"{what}; no partial output was left behind; rerun the same command (finished cache shards are kept)")
    sys.exit(130)


def main(argv: list[str] | None = None) -> None:
    """Entry point: people get a short usage error (exit 2) or one `error:` line (exit 1), not a traceback.
    On SIGINT or SIGTERM (exit 130) or any error, no temporary file is left behind."""
    args = sys.argv[1:] if argv is None else argv
    _state["debug"] = "--debug" in args[:1]
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    try:
        _run(args)
    finally:
        atomic.remove_all()


def _run(args: list[str]) -> None:
    try:
        if not args:
            raise click.UsageError("Missing command.", click.Context(app, info_name="deita"))
        app.main(args=args, prog_name="deita", standalone_mode=False)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.Abort:  # click's form of KeyboardInterrupt (and so of SIGTERM)
        _stopped(_state.get("terminated", False))
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except KeyboardInterrupt as stop:
        if _state["debug"]:
            atomic.remove_all()
            raise
        _stopped(isinstance(stop, Terminated))
    except DeitaError as err:
        if _state["debug"]:
            raise
        _error(str(err))
        sys.exit(2 if getattr(err, "usage", False) else 1)
    except OSError as err:
        if _state["debug"]:
            raise
        writing = atomic.writing()
        atomic.remove_all()
        if err.filename is None and err.errno in (errno.ENOSPC, errno.EDQUOT) and writing:
            _error(str(atomic.write_error(err, writing[-1])))
        else:
            where = f": {err.filename}" if err.filename else ""
            _error(f"{err.strerror or err}{where}")
        sys.exit(1)

