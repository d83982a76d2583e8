"""The fake OpenAI-compatible server over the tiny model, shared by the openai backend's test modules."""

from __future__ import annotations

import pytest
from openai_server import BackgroundServer, ServerOptions, create_app


@pytest.fixture(scope="session")
def server(tiny_llama):
    """One server for the session; `server.options` is how tests change its behaviour."""
    options = ServerOptions()
    with BackgroundServer(create_app(str(tiny_llama), options)) as running:
        running.options = options
        yield running


@pytest.fixture
def options(server) -> ServerOptions:
    """The server's behaviour, reset to an honest vLLM-like server (cap 20, bias honoured, no key) per test."""
    server.options.reset()
    return server.options
