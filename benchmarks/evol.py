"""Benchmark `deita evol` + `deita rank` request concurrency against one-request-at-a-time, on one fake server.

    python benchmarks/evol.py                       # 48 seeds from the real ShareGPT file, 50 ms per answer
    python benchmarks/evol.py --seeds 96 --latency 0.1 --concurrency 32

The server is the EVOL tests' fake OpenAI-compatible chat server (tests/evol/chat_server.py), run in its own
process with a fixed latency per answer, standing in for a generating LLM. Both runs make the same calls on the same seeds;
the reference sends them one at a time (concurrency 1), as a plain loop over the seed set would. Then a
rerun of the concurrent job shows what resuming costs (no calls). Each run's cost report is printed.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "evol"), str(ROOT / "tests" / "scoring")]
REAL = Path("/work/shared/data/sharegpt_v3_5k.json")


def seeds(folder: Path, n: int) -> Path:
    """The first `n` records of the real ShareGPT file when it is here, else synthetic Alpaca seeds."""
    from chat_server import seed_records  # noqa: PLC0415 (tests/evol is on the path only when run as a script)

    records = json.loads(REAL.read_text())[: n + n // 10] if REAL.exists() else seed_records(n)
    path = folder / "seeds.json"
    path.write_text(json.dumps(records))
    return path


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, str(ROOT / "tests" / "evol" / "chat_server.py"), "--port", str(port),
                                "--latency", str(latency)])
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            httpx.get(url + "/models", timeout=1.0)
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the fake server did not start")


def run(url: str, seed_file: Path, folder: Path, concurrency: int) -> tuple[float, int, list[str]]:
    from deita.evol.client import RetryOptions
    from deita.evol.config import EvolConfig, RankConfig
    from deita.evol.run import evolve_file, rank_file
    from deita.runtime.options import RunOptions
    from deita.scoring.backends.openai import OpenAIOptions

    server_options = {"openai": OpenAIOptions(base_url=url, served_model="fake", concurrency=concurrency),
                      "retry": RetryOptions(backoff=0.05)}
    options = RunOptions(quiet=True, on_error="skip", shard_size=16)
    started = time.perf_counter()
    evolved = evolve_file(seed_file, folder / "evolved.jsonl", EvolConfig(**server_options), options)
    ranked = rank_file(folder / "evolved.jsonl", folder / "ranked.jsonl", RankConfig(**server_options), options)
    seconds = time.perf_counter() - started
    return seconds, evolved.summary.usage.calls + ranked.summary.usage.calls, evolved.lines() + ranked.lines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=48)
    parser.add_argument("--latency", type=float, default=0.05, help="Seconds per answer.")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    process, url = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            seed_file = seeds(folder, args.seeds)
            print(f"seeds: {'real ShareGPT' if REAL.exists() else 'synthetic'}; answer latency "
                  f"{args.latency * 1000:.0f} ms; server in its own process")
            (folder / "one").mkdir()
            (folder / "many").mkdir()
            one, calls_one, _ = run(url, seed_file, folder / "one", 1)
            many, calls_many, report = run(url, seed_file, folder / "many", args.concurrency)
            again, calls_again, resumed = run(url, seed_file, folder / "many", args.concurrency)
            same = (folder / "one" / "ranked.jsonl").read_text() == (folder / "many" / "ranked.jsonl").read_text()
    finally:
        process.terminate()
        process.wait()
    print(f"one request at a time: {one:.2f} s, {calls_one} calls")
    print(f"concurrency {args.concurrency}:        {many:.2f} s, {calls_many} calls  → {one / many:.1f}× faster"
          f" (same RANKED file: {same})")
    print(f"rerun (resume):        {again:.2f} s, {calls_again} calls")
    print("cost report of the concurrent run:")
    print("\n".join(f"  {line}" for line in report))
    print("cost report of the rerun:")
    print("\n".join(f"  {line}" for line in resumed))


if __name__ == "__main__":
    main()
