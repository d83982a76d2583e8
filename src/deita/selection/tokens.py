"""Token costs for `--token-budget`: every message of a record (the system message and a split chat's leading
assistant messages included), tokenized without special tokens by `--budget-tokenizer`, summed.

`TokenCounter` is loaded once; `record_tokens` is a per-record function, so a pass that already holds each
parsed record (the filter's read, the one-pass select) computes the column as it goes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deita.data.formats import detect_format, role_messages
from deita.errors import DeitaError


class TokenCounter:
    """Counts tokens of texts with a tokenizer: a tokenizer.json file, a local folder (its tokenizer.json, else
    the transformers tokenizer it holds) or a model id in the local Hugging Face cache."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._fast, self._slow = _load(name)

    def count(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text, without special tokens (no BOS/EOS, no template)."""
        if not texts:
            return []
        if self._fast is not None:
            return [len(encoding.ids) for encoding in self._fast.encode_batch(list(texts), add_special_tokens=False)]
        return [len(ids) for ids in self._slow(list(texts), add_special_tokens=False)["input_ids"]]


def _load(name: str) -> tuple[Any, Any]:
    """(a `tokenizers.Tokenizer`, None) when a tokenizer.json is at hand, else (None, a transformers tokenizer)."""
    from tokenizers import Tokenizer

    path = Path(name)
    file = path / "tokenizer.json" if path.is_dir() else path
    if file.is_file() and file.suffix == ".json":
        try:
            fast = Tokenizer.from_file(str(file))
        except Exception as err:  # the library raises bare Exceptions for a malformed file
            raise DeitaError(f"--budget-tokenizer {name}: not a readable tokenizer.json ({err})") from None
        fast.no_truncation()
        fast.no_padding()
        return fast, None
    if path.exists() and not path.is_dir():
        raise DeitaError(f"--budget-tokenizer {name}: give a tokenizer.json file or a folder holding a tokenizer")
    if not path.exists() and (name.startswith(("/", ".", "~")) or name.endswith(".json")):
        raise DeitaError(f"--budget-tokenizer {name}: no such file or folder")
    try:
        from transformers import AutoTokenizer

        slow = AutoTokenizer.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DeitaError(f"--budget-tokenizer {name}: no tokenizer found there or in the local Hugging Face cache "
                         f"({first}); give a local folder or a tokenizer.json") from None
    return None, slow


def record_tokens(raw: dict, counter: TokenCounter) -> int:
    """Tokens of every message of one record (already accepted by a reader), summed."""
    return sum(counter.count([text for _, text in role_messages(raw, detect_format(raw))]))


class TokenColumn:
    """Token costs of records added one by one, tokenized in batches (one batch call per `batch` records)."""

    def __init__(self, counter: TokenCounter, batch: int = 512) -> None:
        self.counter = counter
        self.batch = batch
        self.costs: list[int] = []
        self._texts: list[str] = []
        self._messages: list[int] = []

    def add(self, raw: dict) -> None:
        texts = [text for _, text in role_messages(raw, detect_format(raw))]
        self._texts.extend(texts)
        self._messages.append(len(texts))
        if len(self._messages) >= self.batch:
            self._flush()

    def _flush(self) -> None:
        counts = self.counter.count(self._texts)
        start = 0
        for n in self._messages:
            self.costs.append(sum(counts[start : start + n]))
            start += n
        self._texts, self._messages = [], []

    def array(self) -> Any:
        """The costs so far, as an int64 numpy array in the order the records were added."""
        import numpy as np

        self._flush()
        return np.asarray(self.costs, dtype=np.int64)
