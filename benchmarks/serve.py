"""Serving throughput: `deita serve` under many concurrent clients against `deita score` on the same records.

    python benchmarks/serve.py                    # CPU: tiny random LLaMA scorers, the static embedder
    python benchmarks/serve.py --gpu              # GPU: random-weight LLaMA-13B scorers (the Deita scorers' shape)
                                                  #      and a random Mistral-7B embedder, bf16 (~40 GB of disk)
    python benchmarks/serve.py --records 2000 --clients 64 --per-request 4

Both sides score the same real ShareGPT records (../shared/data, else generated ones) with the same
models, complexity and quality. The reference is `deita score`'s own pass (`run_stage` over the file, read,
sharded, scored, written), once per score type, with the model already loaded, so that neither side pays
for loading; the whole `deita score` commands, start-up and loading included, are timed too. The service
runs as the installed `deita serve` on loopback; `--clients` threads send `--per-request` records per
request, as fast as answers come. Prints throughput (records/s) and its ratio to `deita score` (target on
CPU: at least 0.8), p50/p99 request latency, the mean engine batch (from /metrics), the server's peak RSS,
and checks every answer against the reference's scores (≤ 1e-4).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from deita.data.io import RecordPolicy, iter_records
from deita.runtime.options import RunOptions
from deita.runtime.runner import run_stage
from deita.runtime.shards import ShardResult
from deita.runtime.sinks import RecordSink
from deita.scoring.config import ScoreConfig
from deita.scoring.scorer import ScoreStage
from deita.scoring.templates import SCORE_FIELDS
from deita.testing import random_causal_lm, save_random_causal_lm

SHAREGPT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sharegpt_v3_5k.json"
DEITA = str(Path(sys.executable).parent / "deita")


class LoadedExecutor:
    """The local executor with its worker loaded beforehand: `deita score`'s pass without the model load."""

    def __init__(self, worker) -> None:
        self.worker = worker

    def run(self, stage, tasks):
        for task in tasks:
            if task.cached:
                yield task, None
                continue
            result = self.worker(task.requests)
            yield task, ShardResult(result.values, task.counts, result.counters)


def records(path: Path, limit: int) -> list[dict]:
    """The first `limit` good ShareGPT records (bad ones skipped), else generated multi-turn records."""
    if path.exists():
        return [{"conversations": record.raw["conversations"]}
                for record in itertools.islice(iter_records(path, policy=RecordPolicy.skipping(None)), limit)]
    words = ["the", "model", "answers", "questions", "about", "data", "selection", "and", "training", "with", "care"]
    return [{"conversations": [{"from": "human" if turn % 2 == 0 else "gpt",
                                "value": " ".join(words[(i + j) % len(words)] for j in range(20 + 7 * (i % 40)))}
                               for turn in range(2 + 2 * (i % 3))]} for i in range(limit)]


def models(folder: Path, gpu: bool, arch: str, embed_arch: str) -> dict:
    """The service's config sections: random-weight models saved where users keep theirs."""
    if not gpu:
        scorer = save_random_causal_lm(folder / "scorer", "tiny-llama")
        return {"complexity": {"model": str(scorer), "device": "cpu"}, "quality": {"model": str(scorer), "device": "cpu"},
                "embed": {"kind": "static"}}
    import torch

    for name, shape in (("scorer", arch), ("embedder", embed_arch)):
        model, tokenizer = random_causal_lm(shape, device="cuda", dtype=torch.bfloat16)
        model.save_pretrained(folder / name)
        tokenizer.save_pretrained(folder / name)
        del model
        torch.cuda.empty_cache()
    scorer = {"model": str(folder / "scorer"), "device": "cuda"}
    return {"complexity": scorer, "quality": scorer, "embed": {"kind": "causal", "model": str(folder / "embedder")}}


class Reference:
    """`deita score`'s pass, complexity then quality, with both models loaded once beforehand."""

    def __init__(self, sections: dict) -> None:
        self.stages = {kind: ScoreStage(ScoreConfig(type=kind, **sections[kind])) for kind in ("complexity", "quality")}
        self.executors = {kind: LoadedExecutor(stage.load_worker()) for kind, stage in self.stages.items()}

    def run(self, path: Path, folder: Path, number: int) -> tuple[float, dict[str, list]]:
        """Seconds of both passes (a fresh cache each time, so nothing is resumed); the scores written."""
        seconds, scores = 0.0, {}
        self.cpu = 0.0
        for kind, stage in self.stages.items():
            output = folder / f"reference-{kind}-{number}.jsonl"
            field = SCORE_FIELDS[kind]
            sink = RecordSink(output, lambda rows, field=field: {field: [float(s) for s in rows]})
            start, cpu = time.perf_counter(), time.process_time()
            run_stage(stage, path, sink, RunOptions(quiet=True), folder / f"cache-{kind}-{number}",
                      executor=self.executors[kind])
            seconds += time.perf_counter() - start
            self.cpu += time.process_time() - cpu
            scores[field] = [json.loads(line)[field] for line in output.read_text().splitlines()]
        return seconds, scores


def cli_seconds(path: Path, sections: dict, folder: Path) -> float:
    """Wall seconds of the two whole `deita score` commands (start-up and model loading included)."""
    start = time.perf_counter()
    for kind in ("complexity", "quality"):
        flags = [item for key, value in sections[kind].items() for item in (f"--{key}", value)]
        subprocess.run([DEITA, "score", path, "-o", folder / f"cli-{kind}.jsonl", "--type", kind, *flags, "-q",
                        "--cache-dir", folder / f"cli-cache-{kind}"], check=True, capture_output=True)
    return time.perf_counter() - start


def start_server(config: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([DEITA, "serve", "--config", config, "--port", "0", "--no-access-log",
                                "--max-queue", "100000"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        match = re.search(r"serving on http://([\d.]+):(\d+)", line)
        if match:
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
            return process, f"{match.group(1)}:{match.group(2)}"
    raise SystemExit(f"deita serve did not start (exit {process.wait()})")


def post(connection: http.client.HTTPConnection, path: str, body: bytes) -> dict:
    connection.request("POST", path, body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"{path}: HTTP {response.status}: {data[:300]!r}")
    return json.loads(data)


def metric(address: str, name: str) -> float:
    connection = http.client.HTTPConnection(address)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    return float(re.search(rf"^{name} (\S+)", text, re.MULTILINE).group(1))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of the server process and its children so far."""
    import psutil

    total = 0.0
    for process in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory (VmHWM) of the server process and its children."""
    import psutil

    total = 0.0
    for process in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        status = Path(f"/proc/{process.pid}/status").read_text()
        total = max(total, int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024)
    return total


def drive(address: str, pool: list[dict], clients: int, per_request: int) -> tuple[float, list[float], list]:
    """Send every record once, `per_request` a request, from `clients` threads; (seconds, latencies, results)."""
    bodies: queue.Queue = queue.Queue()
    for start in range(0, len(pool), per_request):
        bodies.put((start, json.dumps({"records": pool[start : start + per_request]}).encode()))
    latencies: list[float] = []
    results: list = [None] * len(pool)
    failures: list[BaseException] = []

    def client() -> None:
        connection = http.client.HTTPConnection(address, timeout=600)
        while True:
            try:
                start, body = bodies.get_nowait()
            except queue.Empty:
                return
            began = time.perf_counter()
            try:
                answer = post(connection, "/v1/score", body)
            except BaseException as err:  # noqa: BLE001  (reported after the run)
                failures.append(err)
                return
            latencies.append(time.perf_counter() - began)
            results[start : start + len(answer["results"])] = answer["results"]

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"{len(failures)} clients failed; first: {failures[0]}")
    return time.perf_counter() - began, latencies, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="random-weight default architectures on a GPU")
    parser.add_argument("--arch", default="llama-13b", help="--gpu: the scorers' architecture (deita's are LLaMA-13B)")
    parser.add_argument("--embed-arch", default="mistral-7b", help="--gpu: the embedder's architecture")
    parser.add_argument("--data", type=Path, default=SHAREGPT)
    parser.add_argument("--records", type=int, default=None, help="records to score (default: 120 CPU, 400 GPU)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--per-request", type=int, default=None, help="records a request (default: 2 CPU, 8 GPU)")
    parser.add_argument("--rounds", type=int, default=None, help="alternated rounds of both sides, medians reported "
                        "(default: 3 CPU, 2 GPU)")
    parser.add_argument("--skip-cli", action="store_true", help="do not time the whole `deita score` commands "
                        "(always skipped with --gpu: loading two 13B models twice more takes minutes)")
    args = parser.parse_args()
    n = args.records or (400 if args.gpu else 120)
    args.rounds = args.rounds or (2 if args.gpu else 3)
    args.per_request = args.per_request or (8 if args.gpu else 2)
    args.skip_cli = args.skip_cli or args.gpu
    folder = Path(tempfile.mkdtemp(prefix="deita-serve-bench-"))
    pool = records(args.data, n)
    path = folder / "records.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in pool))
    turns = sum(len(record["conversations"]) // 2 + len(record["conversations"]) % 2 for record in pool)
    sections = models(folder, args.gpu, args.arch, args.embed_arch)
    config = folder / "service.yaml"
    config.write_text(json.dumps(sections))
    print(f"records: {len(pool):,} ({args.data if args.data.exists() else 'generated'}), about {turns:,} turns; "
          f"models: {sections['complexity']['model']} ({'GPU' if args.gpu else 'CPU'})", flush=True)

    reference = Reference(sections)
    reference.run(path, folder, -1)  # warm-up: first calls of each shape
    cli = None if args.skip_cli else cli_seconds(path, sections, folder)
    if cli is not None:
        print(f"deita score (the two whole commands, start-up and loading included): {cli:.2f} s, "
              f"{len(pool) / cli:,.1f} records/s", flush=True)
    process, address = start_server(config)
    reference_times, serve_times, latencies, reference_cpu, serve_cpu = [], [], [], [], []
    try:
        warm = http.client.HTTPConnection(address, timeout=600)
        for start in range(0, len(pool), 16):  # warm-up: the same first calls on the server's side
            post(warm, "/v1/score", json.dumps({"records": pool[start : start + 16]}).encode())
        batches, batched = metric(address, "deita_batch_records_count"), metric(address, "deita_batch_records_sum")
        for number in range(args.rounds):  # alternated, so that a busy machine slows both sides alike
            seconds, expected = reference.run(path, folder, number)
            reference_times.append(seconds)
            reference_cpu.append(reference.cpu)
            cpu = cpu_seconds(process.pid)
            seconds, round_latencies, results = drive(address, pool, args.clients, args.per_request)
            serve_times.append(seconds)
            serve_cpu.append(cpu_seconds(process.pid) - cpu)
            latencies += round_latencies
            print(f"round {number + 1}: deita score {reference_times[-1]:.2f} s ({reference_cpu[-1]:.2f} CPU s), "
                  f"deita serve {seconds:.2f} s ({serve_cpu[-1]:.2f} CPU s)", flush=True)
        batches = metric(address, "deita_batch_records_count") - batches
        batched = metric(address, "deita_batch_records_sum") - batched
        rss = peak_rss_mib(process.pid)
    finally:
        process.terminate()
        code = process.wait(timeout=120)
    reference_seconds, seconds = float(np.median(reference_times)), float(np.median(serve_times))
    reference_rate = len(pool) / reference_seconds
    print(f"deita score (its pass, models loaded; complexity + quality): median {reference_seconds:.2f} s, "
          f"{reference_rate:,.1f} records/s")
    worst = 0.0
    for i, result in enumerate(results):
        for field, values in expected.items():
            worst = max(worst, float(np.max(np.abs(np.asarray(result[field]) - np.asarray(values[i])))))
    rate = len(pool) / seconds
    cpu_ratio = float(np.median(reference_cpu)) / max(float(np.median(serve_cpu)), 1e-9)
    p50, p99 = np.percentile(latencies, [50, 99])
    figures = {"device": "gpu" if args.gpu else "cpu", "records": len(pool), "clients": args.clients,
               "rounds": args.rounds,
               "per_request": args.per_request, "serve_records_per_s": round(rate, 2),
               "score_records_per_s": round(reference_rate, 2), "ratio_to_deita_score": round(rate / reference_rate, 3),
               "cpu_time_ratio": round(cpu_ratio, 3), "ratio_to_deita_score_commands": round(rate * cli / len(pool), 3) if cli else None,
               "latency_p50_s": round(float(p50), 4), "latency_p99_s": round(float(p99), 4),
               "mean_batch_records": round(batched / max(batches, 1), 2), "engine_batches": int(batches),
               "server_peak_rss_mib": round(rss, 1), "max_abs_score_difference": worst, "server_exit_code": code}
    print(f"deita serve: median {seconds:.2f} s, {rate:,.1f} records/s with {args.clients} clients × {args.per_request} "
          f"records a request")
    print(f"throughput ratio serve / deita score: {rate / reference_rate:.2f}× (target ≥ 0.8× on CPU)"
          + (f"; {figures['ratio_to_deita_score_commands']:.2f}× the whole commands" if cli else ""))
    print(f"CPU seconds per record, deita score / deita serve: {cpu_ratio:.2f}× (what a shared machine's "
          "contention distorts least)")
    print(f"latency p50 {p50 * 1000:,.0f} ms, p99 {p99 * 1000:,.0f} ms; mean engine batch {figures['mean_batch_records']} "
          f"records over {int(batches)} batches; server peak RSS {rss:,.0f} MiB")
    print(f"every answer equals deita score's to {worst:.1e} (≤ 1e-4 required); server exit code {code}")
    print(json.dumps(figures))
    if worst > 1e-4 or code != 0:
        raise SystemExit(1)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
