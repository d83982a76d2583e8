"""A fake OpenAI-compatible `/v1/chat/completions` server for the EVOL tests, on a real HTTP socket.

It solves a synthetic task with the project's default prompts: an evolution appends one constraint
phrase (" and also constraint N") to the text between the prompt's `<instruction>` (complexity) or
`<answer>` (quality) tags; a ranking scores the shown variants by how many such phrases each holds
(1 for the fewest). It counts every request and injects faults on demand: HTTP errors with or without
Retry-After, slow answers (client timeouts), answers that are not JSON, out-of-range scores, empty,
refused or unchanged evolutions, a server that rejects `response_format`.
"""

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

PHRASE = " and also constraint "
BLOCK = re.compile(r"\[(\d+)\]\n<(instruction|answer)>\n(.*?)\n</\2>", re.DOTALL)
SINGLE = {"instruction": re.compile(r"<instruction>\n(.*?)\n</instruction>", re.DOTALL),
          "answer": re.compile(r"<answer>\n(.*?)\n</answer>", re.DOTALL)}


def phrases(text: str) -> int:
    return text.count(PHRASE)


def evolve_text(text: str) -> str:
    return f"{text}{PHRASE}{phrases(text) + 1}"


@dataclass
class ChatServerOptions:
    """How the server behaves; tests set these between runs (`reset()` restores an honest server)."""

    faults: list[str] = field(default_factory=list)
    """Consumed one per request, in arrival order: an HTTP status ("429", "500", "401", …), timeout, garbage (a body that is not JSON),
    malformed (content that is not JSON), out_of_range, empty, refuse, unchanged, no_usage, ok."""
    fault_when: Callable[[dict[str, Any]], str | None] | None = None
    """Per request: a fault for it (after the queue), from its body."""
    schema: str = "accept"
    """accept: honour response_format; reject: 400 whenever a request carries one."""
    retry_after: str | None = None
    """The Retry-After header of 429 and 503 answers."""
    delay: float = 2.0
    """Seconds a `timeout` fault waits before answering."""
    requests: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    def reset(self) -> None:
        self.faults.clear()
        self.fault_when, self.schema, self.retry_after, self.delay = None, "accept", None, 2.0
        self.requests.clear()
        self.arrivals.clear()
        self.headers.clear()

    def prompts(self, kind: str | None = None) -> list[str]:
        """The user message of every request (of `kind`: evolve or rank)."""
        texts = [body["messages"][-1]["content"] for body in self.requests]
        return [t for t in texts if kind is None or task_of(t)[0] == kind]


def task_of(prompt: str) -> tuple[str, Any]:
    """("rank", shown texts) or ("evolve", the text to evolve)."""
    blocks = BLOCK.findall(prompt)
    if len(blocks) >= 2:
        return "rank", [text for _, _, text in blocks]
    for tag in ("answer", "instruction"):  # quality prompts hold the question too; the answer is what evolves
        match = SINGLE[tag].search(prompt)
        if match:
            return "evolve", match.group(1)
    raise ValueError(f"unknown task: {prompt[:200]!r}")


def true_scores(texts: list[str]) -> list[int]:
    """1 + how many shown texts have fewer phrases: the honest ranking of the synthetic task."""
    counts = [phrases(t) for t in texts]
    return [1 + sum(other < mine for other in counts) for mine in counts]


def seed_records(n: int, start: int = 0) -> list[dict]:
    """Alpaca seeds with distinctive texts ("seed-07: ...", so a prompt names exactly one seed)."""
    return [{"id": f"s{i}", "instruction": f"seed-{i:02d}: write a short note about topic {i}", "input": "",
             "output": f"answer-{i:02d}: a short note."} for i in range(start, start + n)]


def seeds_in(prompt: str) -> set[str]:
    return set(re.findall(r"seed-\d\d", prompt))


def create_app(options: ChatServerOptions) -> FastAPI:
    app = FastAPI()
    lock = threading.Lock()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        with lock:
            options.requests.append(body)
            options.arrivals.append(time.monotonic())
            options.headers.append(dict(request.headers))
            fault = options.faults.pop(0) if options.faults else None
        if fault is None and options.fault_when is not None:
            fault = options.fault_when(body)
        retry = {"Retry-After": options.retry_after} if options.retry_after else {}
        if fault == "401":  # as some servers do: quote what was sent
            sent = request.headers.get("authorization", "nothing")
            return JSONResponse({"error": {"message": f"Incorrect API key provided: {sent}"}}, status_code=401)
        if fault is not None and fault.isdigit():
            return JSONResponse({"error": {"message": f"injected {fault}"}}, status_code=int(fault), headers=retry)
        if fault == "timeout":
            await asyncio.sleep(options.delay)
        if fault == "garbage":
            return PlainTextResponse("<html>bad gateway</html>", status_code=200)
        if "response_format" in body and options.schema == "reject":
            return JSONResponse({"error": {"message": "response_format json_schema is not supported"}},
                                status_code=400)
        prompt = body["messages"][-1]["content"]
        kind, data = task_of(prompt)
        if kind == "rank":
            scores = true_scores(data)
            if fault == "out_of_range":
                scores[0] = len(scores) + 1
            content = json.dumps({"scores": scores})
            if fault == "malformed":
                content = "Scores: " + content[:-2]
        else:
            content = evolve_text(data)
            if fault == "empty":
                content = "   "
            elif fault == "refuse":
                content = "I'm sorry, but I can't help with rewriting this."
            elif fault == "unchanged":
                content = data
        usage = {"prompt_tokens": len(prompt) // 4, "completion_tokens": max(1, len(content) // 4)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        answer = {"id": "chatcmpl-test", "object": "chat.completion", "model": body.get("model"),
                  "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                               "finish_reason": "stop"}]}
        if fault != "no_usage":
            answer["usage"] = usage
        return answer

    return app


if __name__ == "__main__":  # serve the synthetic task by hand: python tests/evol/chat_server.py --port 8011
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="The fake chat server of the EVOL tests (synthetic task).")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--latency", type=float, default=0.0, help="Seconds each answer takes.")
    args = parser.parse_args()
    served = ChatServerOptions(delay=args.latency)
    if args.latency:
        served.fault_when = lambda body: "timeout"  # answered after `delay` seconds, like a generating server
    uvicorn.run(create_app(served), host="127.0.0.1", port=args.port, log_level="warning")
