"""Every GPU check of issue 24 (and issue 20's score/embed reruns) in one call: each part runs as its own
process under its own time cap, in priority order, within one overall budget; a part that fails or runs
out of time is recorded and the next one runs. Started by benchmarks/gpu_check.sh, which installs the
carried wheels and unpacks the data first.

    python benchmarks/gpu_check.py --work /tmp/gpu_check --out $OUT [--tiny] [--budget 300] [--parts sft,dpo]

After each part it rewrites OUT/gpu_check.json (every part's figures, status and seconds) and
OUT/gpu_check.md (tables for docs/benchmarks.md), so a call stopped at its limit still returns what it has.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpu_tables import markdown

BENCHMARKS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Part:
    """One check: its script, its arguments (on a GPU and with --tiny), its time caps, what it needs first."""

    name: str
    script: str
    arguments: Callable[[argparse.Namespace, bool], list[str]]
    cap_s: int  # on the GPU
    tiny_cap_s: int  # with --tiny on a shared 2-core CPU (several times slower under other jobs' load)
    min_s: int  # not started with less than this left of the budget
    needs: tuple[str, ...] = ()
    optional: bool = False  # its script comes with another branch: skipped while it is not in the checkout


def _common(args: argparse.Namespace, tiny: bool) -> list[str]:
    return ["--data", str(args.data), "--json", str(args.work / "figures.json")] + (["--tiny"] if tiny else [])


PARTS = (  # in priority order: issue 24's training parts, its scoring and serving parts, issue 20's reruns
    Part("env", "gpu_env.py", lambda a, t: ["--json", str(a.work / "figures.json"), "--peak-seconds", "6",
                                              "--site", str(a.site), "--tokenizer", str(a.tokenizer)], 60, 300, 15),
    Part("model", "gpu_model.py", lambda a, t: ["--tokenizer", str(a.tokenizer), "--out", str(a.work / "model"),
                                                "--json", str(a.work / "figures.json")], 60, 300, 15),
    Part("sft", "train.py", lambda a, t: [*_common(a, t), "--model", str(a.work / "model"), "--peak-json",
                                          str(a.work / "env.json")], 170, 1500, 60, needs=("model",)),
    Part("dpo", "dpo.py", lambda a, t: [*_common(a, t), "--model", str(a.work / "model"), "--peak-json",
                                        str(a.work / "env.json")], 150, 1500, 60, needs=("model",)),
    Part("score_cli", "score_cli.py", lambda a, t: ["--data", str(a.data), "--json", str(a.work / "figures.json"),
                                                    "--model", str(a.work / "model"),
                                                    *(["--records", "150", "--shard-size", "32"] if t else [])],
         120, 1200, 60, needs=("model",)),
    Part("ifd", "ifd.py", lambda a, t: ["--data", str(a.data), "--json", str(a.work / "figures.json"),
                                        *(["--n", "6", "--n-single", "2"] if t else
                                          ["--gpu", "--n", "1000", "--n-single", "50", "--peak-seconds", "3"])],
         100, 900, 45, optional=True),
    Part("serve", "serve.py", lambda a, t: ["--data", str(a.data), "--json", str(a.work / "figures.json"),
                                            *([] if t else ["--gpu"])], 100, 900, 45, optional=True),
    Part("score", "score.py", lambda a, t: ["--data", str(a.data), "--json", str(a.work / "figures.json"),
                                            "--peak-seconds", "3", *(["--n", "40", "--n-single", "10", "--n-toolkit",
                                                                      "3"] if t else
                                                                     ["--n", "1000", "--n-single", "60",
                                                                      "--n-toolkit", "20"])], 100, 900, 45),
    Part("embed", "embed.py", lambda a, t: ["--data", str(a.data), "--json", str(a.work / "figures.json"),
                                            "--peak-seconds", "3", *(["--n", "20", "--n-single", "5"] if t else
                                                                     ["--n", "600", "--n-single", "40"])],
         100, 900, 45),
)
NAMES = tuple(part.name for part in PARTS)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (models, per-part figures)")
    parser.add_argument("--out", type=Path, required=True, help="where gpu_check.json and gpu_check.md go")
    parser.add_argument("--data", type=Path, required=True, help="the unpacked ShareGPT slice")
    parser.add_argument("--tokenizer", type=Path, required=True, help="the carried tokenizer folder")
    parser.add_argument("--site", type=Path, required=True, help="where the carried wheels were installed")
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU: the same code paths, fast")
    parser.add_argument("--budget", type=float, help="seconds for all parts together (default: 300 on a GPU; "
                        "7200 with --tiny)")
    parser.add_argument("--parts", default=",".join(NAMES), help=f"comma-separated, run in this order: {NAMES}; "
                        "env always runs (versions, matmul rate), model whenever a part needs it")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.parts.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(NAMES))
    if unknown:
        parser.error(f"--parts: unknown {unknown}; choose from {', '.join(NAMES)}")
    args.chosen = {"env"} | set(chosen) | {need for part in PARTS if part.name in chosen for need in part.needs}
    args.budget = args.budget or (7200.0 if args.tiny else 300.0)
    return args


def run_part(part: Part, args: argparse.Namespace, timeout: float) -> dict[str, Any]:
    """Run one part as its own process group (killed whole at the timeout); its figures and status."""
    figures_path = args.work / "figures.json"
    figures_path.unlink(missing_ok=True)
    command = [sys.executable, str(BENCHMARKS / part.script), *part.arguments(args, args.tiny)]
    print(f"\n=== {part.name}: {' '.join(command[1:])} (cap {timeout:.0f} s)", flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(command, start_new_session=True)
    try:
        code = process.wait(timeout=timeout)
        status = "ok" if code == 0 else f"failed (exit {code})"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        status = f"timed out at {timeout:.0f} s"
    result: dict[str, Any] = {"status": status, "seconds": round(time.perf_counter() - start, 1),
                              "cap_s": round(timeout)}
    if figures_path.exists():
        try:
            result["figures"] = json.loads(figures_path.read_text())
        except json.JSONDecodeError as err:
            result["figures_error"] = str(err)
        if part.name == "env":
            figures_path.replace(args.work / "env.json")
    return result


def skip_reason(part: Part, args: argparse.Namespace, results: dict[str, dict], left: float) -> str | None:
    if part.name not in args.chosen:
        return "not asked for (--parts)"
    if part.optional and not (BENCHMARKS / part.script).exists():
        return f"benchmarks/{part.script} is not in this checkout yet"
    failed = [need for need in part.needs if results.get(need, {}).get("status") != "ok"]
    if failed:
        return f"needs {', '.join(failed)}, which did not finish"
    if left < part.min_s:
        return f"budget spent ({left:.0f} s left, it needs at least {part.min_s} s)"
    return None


def write(args: argparse.Namespace, report: dict[str, Any]) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (args.out / "gpu_check.md").write_text(markdown(report))


def main() -> None:
    args = arguments()
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    report: dict[str, Any] = {"date": datetime.date.today().isoformat(), "tiny": args.tiny, "budget_s": args.budget,
                              "data": str(args.data), "parts": {}}
    for part in PARTS:
        left = args.budget - (time.perf_counter() - started)
        reason = skip_reason(part, args, report["parts"], left)
        if reason is not None:
            report["parts"][part.name] = {"status": f"skipped: {reason}"}
            continue
        cap = part.tiny_cap_s if args.tiny else part.cap_s
        report["parts"][part.name] = run_part(part, args, min(cap, left))
        report["seconds"] = round(time.perf_counter() - started, 1)
        write(args, report)
    report["seconds"] = round(time.perf_counter() - started, 1)
    write(args, report)
    print("\n" + markdown(report))
    for name, result in report["parts"].items():
        print(f"{name:>10}: {result['status']}" + (f" in {result['seconds']} s" if "seconds" in result else ""))


if __name__ == "__main__":
    main()
