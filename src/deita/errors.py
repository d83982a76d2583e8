"""The exception types users see (a message for people, printed by the CLI without a traceback), and
`quote`, the one way an error shows a value."""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable, Sequence
from typing import Any

QUOTE_CHARS = 80
"""At most this many characters of any value appear in an error message."""



class _ShortRepr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:  # str() of a huge int is slow, and refused past 4,300 digits
            return f"<an integer of about {int(x.bit_length() * 0.30103) + 1:,} digits>"
        return super().repr_int(x, level)


_REPR = _ShortRepr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 2, 4, 4, 4, 4
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = QUOTE_CHARS


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """`repr(value)` cut to about `limit` characters, without ever building the whole repr: a huge, deeply
    nested or self-referencing value (a YAML alias bomb, a list holding itself) costs a few lines of text."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class DeitaError(Exception):
    """An error the user can act on; the message says what is wrong and, where possible, what to do."""


class RecordError(DeitaError):
    """A problem with one input record: names the file, the record (line or index) and the problem."""

    def __init__(self, path: str, location: str, problem: str, hint: str = "") -> None:
        self.path = str(path)
        self.location = location
        self.problem = problem
        message = f"{self.path}, {location}: {problem}"
        if hint:
            message += f". {hint}"
        super().__init__(message)


class ConfigError(DeitaError, ValueError):
    """An invalid option value or combination, raised when a config is built (Python, YAML or flags alike).

    `fields` are the dotted names of the options at fault. A one-field error reads `FIELD: PROBLEM`; a rule
    across options (`rule=True`) names its fields inside `problem`. `located` renders the same error for
    where the values came from: a file and its key paths, or the flags a user typed. `usage` marks a
    combination the command line cannot run at all (the CLI exits 2 for it, as for a usage error).
    """

    def __init__(self, problem: str, fields: Sequence[str] = (), *, rule: bool = False, where: str = "",
                 label: Callable[[str], str] | None = None, usage: bool = False) -> None:
        self.problem, self.fields, self.rule, self.usage = problem, tuple(fields), rule, usage
        super().__init__(self._render(where, label or (lambda path: path)))

    def _render(self, where: str, label: Callable[[str], str]) -> str:
        if self.rule:
            text = self.problem
            for path in self.fields:
                leaf = path.rpartition(".")[2]
                text = re.sub(rf"(?<![\w.-]){re.escape(leaf)}(?![\w-])", lambda _, p=path: label(p), text)
        else:
            text = f"{label(self.fields[0])}: {self.problem}" if self.fields else self.problem
        return f"{where}: {text}" if where else text

    def nested(self, prefix: str) -> ConfigError:
        """The same error one level down: its fields under `prefix` (a section or a nested option)."""
        return ConfigError(self.problem, [f"{prefix}.{path}" for path in self.fields] or [prefix], rule=self.rule,
                           usage=self.usage)

    def located(self, where: str = "", label: Callable[[str], str] | None = None) -> ConfigError:
        """The same error, rendered for `where` (a file, a class) with each field named by `label`."""
        return ConfigError(self.problem, self.fields, rule=self.rule, where=where, label=label, usage=self.usage)
