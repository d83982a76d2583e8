"""A fake chat server for the EVOL tests, started once per session; each test gets it reset."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scoring"))  # the shared BackgroundServer

from chat_server import ChatServerOptions, create_app
from openai_server import BackgroundServer


@pytest.fixture(scope="session")
def chat_server_session():
    options = ChatServerOptions()
    with BackgroundServer(create_app(options)) as running:
        running.options = options
        yield running


@pytest.fixture
def chat_server(chat_server_session):
    chat_server_session.options.reset()
    return chat_server_session

