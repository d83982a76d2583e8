"""`ServeConfig`: the options of `deita serve` (its flags are generated from these fields)."""

from __future__ import annotations

from dataclasses import dataclass

from deita.config import Config, option
from deita.errors import ConfigError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServeConfig(Config):
    """Where the service listens, what it loads besides the models, and the bounds every request meets."""

    host: str = option("127.0.0.1", "Address to bind; anything but loopback exposes the service (set "
                       "--api-key-env then).")
    port: int = option(8080, "Port to bind; 0 picks a free one (the URL printed says which).", min=0, max=65535)
    selection: str = option("", "OUTPUT of a finished `deita select` run: its pool, scores and embeddings give "
                            "neighbours and rank percentiles (found through OUTPUT.manifest.json).")
    api_key_env: str = option("", "Name of an environment variable holding the API key: every request then "
                              "needs `Authorization: Bearer <key>`.")
    max_body_mb: float = option(10.0, "Largest request body in MiB; larger ones get 413.", min=0.001, max=1e6)
    max_records: int = option(256, "Most records (or embedding inputs) in one request; more get 413.", min=1,
                              max=10**7)
    max_queue: int = option(4096, "Most records waiting for the engine; past that requests get 503 with "
                            "Retry-After.", min=1, max=10**9)
    batch_wait_ms: float = option(5.0, "How long the engine waits for more requests to join a batch when "
                                  "it is idle.", min=0.0, max=10_000.0)
    max_batch_records: int = option(512, "Most records merged into one engine batch (the engine then splits "
                                    "it into token-budget batches).", min=1, max=10**7)
    max_neighbors: int = option(50, "Largest k of /v1/neighbors.", min=1, max=10**6)
    shutdown_timeout: float = option(30.0, "Seconds to finish the requests in flight after SIGINT/SIGTERM.",
                                     min=0.0, max=86_400.0)
    access_log: bool = option(True, "Log one line per request (method, path, status; never the key).")

    def check(self) -> None:
        """A request as large as allowed must fit in the queue, or it could never be served."""
        if self.max_queue < self.max_records:
            raise ConfigError(f"max_queue ({self.max_queue}) must be at least max_records ({self.max_records}): "
                              "a request that cannot fit in the queue would be refused for ever",
                              ["max_queue", "max_records"], rule=True)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 2**20)

    @property
    def loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS or self.host.startswith("127.")
