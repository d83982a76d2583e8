"""Start the installed `deita serve` on a free port and talk to it over HTTP, as a client would."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from builders import sharegpt

DEITA = shutil.which("deita") or str(Path(sys.executable).parent / "deita")
URL_LINE = re.compile(r"serving on (http://\S+)")


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    output: list[str] = field(default_factory=list)
    key: str | None = None
    """Sent as a bearer token with every call that does not give its own headers."""
    reader: threading.Thread | None = None

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None, timeout: float = 600) -> Answer:
        """One request with urllib (which sends the whole body before reading the answer)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if headers is None:
            headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json", **headers})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return Answer(response.status, decode(response.read()), lower(response.headers))
        except urllib.error.HTTPError as err:
            return Answer(err.code, decode(err.read()), lower(err.headers))

    def text(self) -> str:
        return "".join(self.output)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 300) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        if self.reader is not None:
            self.reader.join(timeout=10)  # the last lines it printed
        return code


def lower(headers: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def decode(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace")


def start(*args: Any, env: dict[str, str] | None = None, key: str | None = None, timeout: float = 900) -> Server:
    """`deita serve ARGS --port 0`, once it prints its URL; its output (stdout and stderr) is collected."""
    process = subprocess.Popen([DEITA, "serve", *map(str, args), "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
    output: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def read() -> None:
        for line in process.stdout:
            output.append(line)
            match = URL_LINE.search(line)
            if match and not url:
                url.append(match.group(1))
                found.set()
        found.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while not found.wait(0.2):
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"deita serve did not start in {timeout} s:\n{''.join(output)}")
    if not url:
        process.wait(timeout=30)
        raise AssertionError(f"deita serve exited {process.returncode}:\n{''.join(output)}")
    return Server(process, url[0], output, key, reader)


TOPICS = ["the water cycle", "binary search", "the French revolution", "photosynthesis", "a sourdough starter",
          "TCP handshakes", "black holes", "compound interest", "the Pythagorean theorem", "vaccines",
          "garbage collection", "plate tectonics", "haiku", "the stock market", "electric cars", "DNA replication",
          "chess openings", "climate models", "regular expressions", "the Roman empire", "jazz harmony",
          "SQL joins", "volcanoes", "neural networks"]


def pool_records() -> list[dict]:
    """Varied records: distinct topics, some multi-turn, role aliases, one chat that opens with the assistant."""
    records = []
    for i, topic in enumerate(TOPICS):
        answer = f"Here is an explanation of {topic}. " + f"It matters because of reason {i}. " * (1 + i % 4)
        messages = [("human", f"Explain {topic} to a curious student."), ("gpt", answer)]
        if i % 3 == 0:
            messages += [("user", f"Give one example about {topic}."), ("assistant", f"An example about {topic}.")]
        if i % 7 == 0:
            messages.insert(0, ("gpt", "Hello! How can I help?"))
        records.append(sharegpt(*messages, id=f"pool-{i}"))
    return records


def request_records() -> list[tuple[dict, dict]]:
    """(ShareGPT record, the same turns in the shape a client sends): every accepted shape, one long enough
    to be truncated at max_length 256. `deita score` reads one format per file: it gets the ShareGPT side."""
    poem = ("Write a poem about the sea. " * 3, "The sea is wide. " * 10)
    text = "lorem ipsum dolor sit amet " * 80
    return [
        (sharegpt(("human", "What is 2+2?"), ("gpt", "4")), {"question": "What is 2+2?", "answer": "4"}),
        (sharegpt(("human", poem[0]), ("gpt", poem[1]), ("human", "Now shorter."), ("gpt", "Sea.")),
         sharegpt(("user", poem[0]), ("chatgpt", poem[1]), ("human", "Now shorter."), ("gpt", "Sea."))),
        (sharegpt(("human", "Summarise the text.\n" + text), ("gpt", "Lorem.")),
         {"instruction": "Summarise the text.", "input": text, "output": "Lorem."}),
        (sharegpt(("human", "Name a prime."), ("gpt", "Seven.")),
         {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a prime."},
                       {"role": "assistant", "content": "Seven."}]}),
        (sharegpt(("human", "Say hi.")), {"instruction": "Say hi.", "output": ""}),
        (sharegpt(("human", "Explain recursion"), ("gpt", "A function that calls itself. " * 4)),
         sharegpt(("gpt", "Hello!"), ("human", "Explain recursion"), ("gpt", "A function that calls itself. " * 4))),
    ]
