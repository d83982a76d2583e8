"""The offline service's queue bound (503 with Retry-After) and a clean SIGTERM that answers the request in
flight. A 3 s batch window holds requests in the queue long enough to see both."""

from __future__ import annotations

import re
import signal
import threading
import time

from serve_helpers import start


def queued(server) -> float:
    text = server.call("GET", "/metrics").body
    return float(re.search(r"^deita_queue_records (\S+)", text, re.MULTILINE).group(1))


def wait_until_queued(server, records: int) -> None:
    deadline = time.monotonic() + 600
    while queued(server) < records:
        assert time.monotonic() < deadline, "the request never reached the queue"
        time.sleep(0.02)


def test_queue_bound_then_clean_sigterm_answers_the_request_in_flight():
    server = start("--preset", "offline", "--max-records", "2", "--max-queue", "2", "--batch-wait-ms", "3000")
    record = {"question": "What is the capital of France?", "answer": "Paris."}
    answers = {}

    def send(name: str) -> None:
        answers[name] = server.call("POST", "/v1/score", {"records": [record, record]})

    try:
        first = threading.Thread(target=send, args=("first",))
        first.start()
        wait_until_queued(server, 2)
        busy = server.call("POST", "/v1/score", {"records": [record]})
        assert busy.status == 503 and busy.body["error"]["kind"] == "busy"
        assert int(busy.headers["retry-after"]) >= 1
        first.join()
        offline = answers["first"].body["results"][0]
        assert offline == {"instruction_lengths": [30.0], "response_lengths": [6.0], "score": 180.0}

        last = threading.Thread(target=send, args=("in flight",))
        last.start()
        wait_until_queued(server, 2)
        assert server.stop(signal.SIGTERM) == 0
        last.join()
    finally:
        if server.process.poll() is None:
            server.process.kill()
    assert answers["in flight"].status == 200 and answers["in flight"].body["results"][1] == offline
    assert "stopped (SIGTERM): the requests in flight were answered" in server.text()
    assert "Traceback" not in server.text()
