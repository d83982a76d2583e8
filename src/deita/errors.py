"""The one exception type users see: a message for people, printed by the CLI without a traceback."""

from __future__ import annotations


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
