"""How any stage runs over a file: reading, bad records, sharding, caching, executor, progress."""

from __future__ import annotations

from dataclasses import dataclass

from deita.config import Config, option
from deita.data.formats import FORMATS, PAIRINGS
from deita.data.policy import ON_ERROR

EXECUTORS = ("local", "ray")
DEFAULT_PROGRESS_INTERVAL = 30.0


@dataclass(frozen=True)
class RunOptions(Config):
    """Options every per-record stage shares; the flags of score, embed and select, the `run:` YAML section."""

    format: str | None = option(None, "Input format: sharegpt, alpaca or messages (default: detected).",
                                choices=FORMATS)
    pairing: str = option("role", "Turn pairing: role (correct) or positional (reproduces the old toolkit).",
                          choices=PAIRINGS)
    on_error: str = option("fail", "fail: stop at the first bad record; skip: write bad records to "
                           "OUTPUT.rejects.jsonl with the reason and continue.", choices=ON_ERROR)
    shard_size: int = option(1024, "Records per shard (the unit of resumable progress).", min=1)
    cache_dir: str | None = option(None, "Where finished shards are kept (default: OUTPUT.cache/; for select "
                                         "OUTPUT.work/cache/, removed once its columns are finished, unless this "
                                         "is set).")
    executor: str = option("local", "local (this process) or ray (Ray Data, many GPUs/nodes).", choices=EXECUTORS)
    ray_address: str | None = option(None, "Ray cluster address; 'auto' joins a running one.")
    num_workers: int | None = option(None, "Ray workers (default: one per GPU, else per 2 CPU cores).", min=1)
    quiet: bool = option(False, "No progress output.", short="-q")
    progress_interval: float = option(DEFAULT_PROGRESS_INTERVAL, "Seconds between progress lines when stderr is "
                                      "not a terminal (a log file).", min=0.0, max=86400.0)
