"""The `deita` command: `app` holds the entry point and the command table, `flags` generates every option
flag from the config dataclasses, `outputs` the checks around a command's work; one module per command
group (data, stages, selection, evol, training) builds its commands."""

from __future__ import annotations

from .app import main

__all__ = ["main"]
