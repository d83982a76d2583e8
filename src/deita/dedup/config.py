"""Options of `deita dedup` and `deita decontaminate`, and of the `dedup:` and `decontaminate:` sections of
`deita select`: declared once, here; the CLI flags and YAML keys are these field names."""

from __future__ import annotations

from dataclasses import dataclass

from deita.config import Config, option
from deita.dedup.normalize import FIELD_HELP, FIELDS
from deita.errors import ConfigError

KEEP = ("first", "longest")


@dataclass(frozen=True)
class DedupConfig(Config):
    """Exact and near-duplicate removal."""

    exact: bool = option(True, "Remove records whose normalised text (NFKC, casefold, whitespace collapsed) is "
                         "the same as a kept record's.")
    near: bool = option(True, "Remove near-duplicates: MinHash with LSH banding on word n-gram shingles.")
    threshold: float = option(0.8, "Estimated Jaccard similarity of the shingle sets at or above which a record "
                              "is a near-duplicate.", min=0.01, max=1.0)
    ngram: int = option(5, "Words per shingle (near).", min=1, max=64)
    num_perm: int = option(128, "MinHash permutations: signature length (near).", min=8, max=1024)
    field: str = option("all", f"What is compared. {FIELD_HELP}", choices=FIELDS)
    keep: str = option("first", "Which record of a duplicate group stays: first (file order) or longest (most "
                       "characters in the compared text).", choices=KEEP)

    @property
    def enabled(self) -> bool:
        return self.exact or self.near

    def ignored_options(self) -> dict[str, str]:
        return {} if self.near else {name: "near" for name in ("threshold", "ngram", "num_perm")}


@dataclass(frozen=True)
class DecontaminateConfig(Config):
    """Removal of records that hold the prompts of evaluation sets."""

    against: tuple[str, ...] = option((), "Eval files (--against A B, or A,B): any format deita reads, or JSON/JSONL "
                                      "rows with prompt, instruction, question or turns (a list of strings, as "
                                      "MT-Bench's question.jsonl).", flag="--against")
    ngram: int = option(13, "Words in a run shared with an eval prompt that marks a record contaminated.",
                        min=1, max=64)
    min_ngram: int = option(8, "Eval prompts shorter than --ngram words are matched whole when they have at least "
                            "this many words; shorter ones only by --embedding-threshold.", min=1, max=64)
    field: str = option("instruction", f"What is checked. {FIELD_HELP}", choices=FIELDS)
    embedding_threshold: float | None = option(
        None, "Also remove records whose text has cosine similarity ≥ this with an eval prompt (paraphrases), with "
        "the embedder (--kind, --model; in select, the embed section).", min=-1.0, max=1.0)

    def check(self) -> None:
        if self.min_ngram > self.ngram:
            raise ConfigError(f"min_ngram ({self.min_ngram}) is larger than ngram ({self.ngram})",
                              ["min_ngram", "ngram"], rule=True)
