"""`deita --help` and every `deita <command> --help` stay light: none of them imports torch."""

from __future__ import annotations

import json
import subprocess
import sys

CHECK = """
import contextlib, io, json, sys
import click
from deita.cli import main
from deita.cli.app import COMMANDS, app

def help_of(args):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            main([*args, "--help"])
        except SystemExit as done:
            assert done.code == 0, (args, done.code)
    assert "Usage: deita" in out.getvalue(), args
    return "torch" in sys.modules

heavy = [] if not help_of([]) else ["deita"]
for name in COMMANDS:
    if help_of([name]):
        heavy.append(name)
    command = app.get_command(click.Context(app), name)
    for sub in getattr(command, "commands", {}):
        if help_of([name, sub]):
            heavy.append(f"{name} {sub}")
print(json.dumps({"commands": len(COMMANDS), "imported_torch": heavy}))
"""


def test_help_of_every_command_does_not_import_torch():
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["commands"] >= 13
    # a command that imports torch is named first in the list (the ones after it find torch loaded)
    assert result["imported_torch"] == []
