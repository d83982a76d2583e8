"""`deita serve` over real HTTP: the same scores as `deita score`, concurrency and batching, bounds, the API."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import threading

import numpy as np
from builders import scored_pool
from serve_helpers import DEITA, request_records

from deita.selection.scores import final_scores


def assert_same_scores(result: dict, expected: dict) -> None:
    for key in ("complexity_scores", "quality_scores"):
        assert len(result[key]) == len(expected[key])
        np.testing.assert_allclose(result[key], expected[key], atol=1e-4, rtol=0)
    keys = ("complexity_scores", "quality_scores")
    total = final_scores([[expected[key]] for key in keys], keys)[0]
    assert abs(result["score"] - total) <= 1e-4


def test_scores_equal_what_deita_score_writes(server, cli_scores):
    expected = cli_scores
    records = [sent for _, sent in request_records()]
    bad = [{"conversations": [{"from": "gpt", "value": "only an answer"}]}, "not a record", {"text": "no format"}]
    answer = server.call("POST", "/v1/score", {"records": [bad[0], *records[:3], bad[1], *records[3:], bad[2]]})
    assert answer.status == 200, answer.body
    results = answer.body["results"]
    assert results[0] == {"error": {"kind": "turns", "reason": "no turns: the conversation has no user message"}}
    assert results[4] == {"error": {"kind": "schema", "reason": "the record is a string, expected an object"}}
    assert results[-1]["error"]["kind"] == "schema" and "'text'" in results[-1]["error"]["reason"]
    good = results[1:4] + results[5:-1]
    for result, reference in zip(good, expected, strict=True):
        assert_same_scores(result, reference)
        assert 0 <= result["rank_percentile"] <= 100 and result["rank"] >= 1
    assert answer.body["aggregation"] == "sum"
    assert answer.body["score_keys"] == ["complexity_scores", "quality_scores"]


def test_32_concurrent_clients_all_answered_and_batched(server, cli_scores):
    expected = cli_scores
    records = [sent for _, sent in request_records()]
    before = batch_histogram(server)
    start = threading.Barrier(32)
    answers: dict[int, object] = {}

    def client(number: int) -> None:
        mine = [records[number % len(records)], records[(number + 1) % len(records)]]
        start.wait()
        answers[number] = server.call("POST", "/v1/score", {"records": mine})

    threads = [threading.Thread(target=client, args=(number,)) for number in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 32
    for number, answer in answers.items():
        assert answer.status == 200, answer.body
        for offset, result in enumerate(answer.body["results"]):
            assert_same_scores(result, expected[(number + offset) % len(records)])
    after = batch_histogram(server)
    batches = after["count"] - before["count"]
    assert after["sum"] - before["sum"] == 64  # every record went through the engine once
    single = after["1.0"] - before["1.0"]
    assert batches < 32 and single < batches, (after, before)  # batches of more than one record


def batch_histogram(server) -> dict[str, float]:
    text = server.call("GET", "/metrics").body
    out = {bound: float(value) for bound, value in re.findall(r'deita_batch_records_bucket\{le="([^"]+)"\} (\S+)', text)}
    out["count"] = float(re.search(r"deita_batch_records_count (\S+)", text).group(1))
    out["sum"] = float(re.search(r"deita_batch_records_sum (\S+)", text).group(1))
    return out


def test_bad_requests_get_400_413_422_without_traceback(server):
    cases = [
        (b"{\"records\": [", 400, "json", None),
        (b"", 400, "json", None),
        (b'{"records": [{"conversations": [], "\\u0063onversations": []}]}', 400, "json", None),
        (b"[1, 2]", 422, "schema", "body"),
        (b"{\"records\": \"x\"}", 422, "schema", "records"),
        (b"{\"record\": []}", 422, "schema", "record"),
        (b"{}", 422, "schema", "records"),
        (json.dumps({"records": [{"question": "q"}] * 300}).encode(), 413, "too_many", "records"),
    ]
    for raw, status, kind, field in cases:
        answer = server.call("POST", "/v1/score", raw=raw)
        assert answer.status == status, (raw[:40], answer.body)
        assert answer.body["error"]["kind"] == kind and answer.body["error"].get("field") == field
        assert "Traceback" not in json.dumps(answer.body)
    answer = server.call("POST", "/v1/score", raw=cases[2][0])
    assert "duplicate key 'conversations'" in answer.body["error"]["reason"]
    oversized = b'{"records": ["' + b"x" * (10 * 2**20) + b'"]}'  # urllib sends all of it before reading
    answer = server.call("POST", "/v1/score", raw=oversized)
    assert answer.status == 413 and answer.body["error"]["kind"] == "too_large"
    assert "10,485,760 bytes" in answer.body["error"]["reason"]
    assert server.call("GET", "/healthz").body == {"status": "ok"}  # and the server is fine after it
    missing = server.call("GET", "/v1/nothing")
    assert missing.status == 404 and missing.body["error"]["kind"] == "not_found"
    k = server.call("POST", "/v1/neighbors", {"records": [], "k": "5"})
    assert k.status == 422 and k.body["error"]["field"] == "k"


def test_metrics_count_requests_by_route_and_status(server):
    server.call("POST", "/v1/score", raw=b"{")
    text = server.call("GET", "/metrics").body
    assert re.search(r'deita_requests_total\{route="/v1/score",status="400"\} [1-9]', text)
    assert "deita_request_seconds_bucket" in text and "deita_batch_records_bucket" in text


def test_neighbors_and_near_duplicate_verdict(server, selected, tmp_path):
    stats = json.loads((selected.parent / "sel.jsonl.work" / "filter_stats.json").read_text())
    pool = [json.loads(line) for line in scored_pool(selected, tmp_path / "scored.jsonl").read_text().splitlines()]
    top = stats["selected"][0]
    copy = {key: value for key, value in pool[top].items() if key == "conversations"}
    answer = server.call("POST", "/v1/neighbors", {"records": [copy], "k": 3})
    assert answer.status == 200, answer.body
    result = answer.body["results"][0]
    assert result["neighbors"][0]["ordinal"] == top and result["neighbors"][0]["cosine"] > 0.9999
    assert len(result["neighbors"]) == 3 and result["neighbors"][0]["selected"] is True
    assert result["near_duplicate"]["ordinal"] == top  # the best selected record: skipped as its copy
    assert result["rank_percentile"] == max(r["rank_percentile"] for r in [result])
    assert answer.body["threshold"] == 0.99


def test_embeddings_in_openai_format(server):
    answer = server.call("POST", "/v1/embeddings", {"input": ["hello world", "deita"]})
    assert answer.status == 200, answer.body
    body = answer.body
    assert body["object"] == "list" and [d["index"] for d in body["data"]] == [0, 1]
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 0
    encoded = server.call("POST", "/v1/embeddings", {"input": "hello world", "encoding_format": "base64",
                                                      "model": body["model"]}).body
    vector = np.frombuffer(base64.b64decode(encoded["data"][0]["embedding"]), dtype="<f4")
    np.testing.assert_allclose(vector, body["data"][0]["embedding"], rtol=0, atol=1e-6)
    info = server.call("GET", "/v1/info").body
    assert len(vector) == info["embedding"]["dimensions"]
    wrong = server.call("POST", "/v1/embeddings", {"input": "x", "model": "text-embedding-3-small"})
    assert wrong.status == 404 and wrong.body["error"]["field"] == "model"


def test_info_reports_models_config_and_selection(server, selected, tiny_llama):
    info = server.call("GET", "/v1/info").body
    assert {m["role"] for m in info["models"]} == {"complexity scorer", "quality scorer", "embedding model"}
    assert info["config"]["quality"]["model"] == str(tiny_llama) and info["config"]["filter"]["threshold"] == 0.99
    assert info["selection"]["pool"] == 24 and info["selection"]["selected"] == 8
    assert info["auth"] == {"required": True, "env": "DEITA_TEST_KEY"}


def test_a_config_that_differs_from_the_run_is_refused_naming_the_difference(selected, tiny_llama, tmp_path):
    """Also: binding a non-loopback address without a key warns first."""
    scorer = {"model": str(tiny_llama), "device": "cpu", "max_length": 512}
    (tmp_path / "other.yaml").write_text(json.dumps({"complexity": {**scorer, "max_length": 256}, "quality": scorer,
                                                     "embed": {"kind": "static", "max_length": 64}}))
    result = subprocess.run([DEITA, "serve", "--selection", selected, "--config", tmp_path / "other.yaml",
                             "--host", "0.0.0.0", "--port", "0"], check=False, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    warning, error = result.stderr.strip().splitlines()
    assert warning.startswith("warning: listening on 0.0.0.0 without an API key") and "--api-key-env" in warning
    assert error.startswith("error: --selection ")
    assert "quality scorer max_length: 512 here, 256 in the run" in result.stderr
    assert "embedder max_length: 64 here, 2048 in the run" in result.stderr
    assert "complexity scorer" not in result.stderr


def test_every_request_needs_the_key(server):
    for method, path, body in (("GET", "/v1/info", None), ("POST", "/v1/score", {"records": []}),
                               ("GET", "/metrics", None), ("GET", "/healthz", None)):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {server.key}"}):
            answer = server.call(method, path, body, headers=headers)
            assert answer.status == 401, (path, headers, answer.body)
            assert answer.body["error"]["kind"] == "auth" and answer.headers["www-authenticate"] == "Bearer"
    assert server.call("GET", "/v1/info").status == 200
    page = server.call("GET", "/", headers={})  # the page itself holds no data: it asks for the key
    assert page.status == 200 and "<textarea" in page.body


def test_without_the_serve_extra_it_says_what_to_install():
    code = ("import sys; sys.modules['fastapi'] = None\n"
            "from deita.cli import main\n"
            "sys.argv = ['deita'] + sys.argv[1:]\n"
            "main()\n")
    run = subprocess.run([sys.executable, "-c", code, "serve", "--preset", "offline", "--port", "0"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip() == ("error: deita serve needs the serve extra (fastapi is not installed): "
                                  "pip install -e '.[serve]'")
