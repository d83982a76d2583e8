"""gpu_check.json as markdown for docs/benchmarks.md: one table row per run, naming the GPU and the MFU."""

from __future__ import annotations

from typing import Any


def _num(value: Any, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _gib(value: Any) -> str:
    return "–" if value is None else f"{value:.1f} GiB"


def figures(report: dict[str, Any], part: str) -> dict[str, Any]:
    return report["parts"].get(part, {}).get("figures") or {}


def header(report: dict[str, Any]) -> tuple[str, list[str]]:
    """(the GPU's name, lines naming the versions, driver and measured matmul rates)."""
    env = figures(report, "env")
    device, versions = env.get("device", {}), env.get("versions", {})
    gpu = device.get("gpu") or ("CPU (--tiny)" if report.get("tiny") else "?")
    lines = [f"{report['date']}, {gpu}: driver {device.get('driver') or '–'}, CUDA {device.get('torch_cuda') or '–'}, "
             + ", ".join(f"{name} {versions.get(name) or '–'}" for name in
                         ("python", "torch", "transformers", "trl", "datasets", "accelerate", "peft", "liger-kernel",
                          "triton"))]
    peak = env.get("matmul_peak_tflops")
    if peak:
        lines.append(f"bf16 matmul 8192³ measured in the same call: burst {peak['burst']:.0f} TFLOP/s, sustained "
                     f"{peak['sustained']:.0f} TFLOP/s (the datasheet's dense peak: 989)")
    fused = env.get("trl_fused_cross_entropy")
    if fused:
        lines.append(f"TRL {fused.get('trl')} and Liger's fused linear cross-entropy: "
                     f"{fused.get('liger_fused_linear_cross_entropy', fused.get('error'))}"
                     + (f" ({fused['message']})" if fused.get("message") else ""))
    return gpu, lines


def model_name(report: dict[str, Any]) -> str:
    """The trained model as gpu_model.py built it: its shape's name, parameters and vocabulary."""
    built = figures(report, "model")
    if not built:
        return "?"
    return f"{built['arch']} shape, {built['parameters'] / 1e9:.2f}B, vocab {built['vocab_size']:,}"


def settings(run: dict[str, Any], found: dict[str, Any]) -> str:
    """How a run ran: deita's resolved options, or the reference's own."""
    resolved = run.get("resolved")
    if resolved:
        on = [name for name in ("compile", "liger", "gradient_checkpointing") if resolved.get(name)]
        return ", ".join([resolved.get("attention", "?"), *on]).replace("gradient_checkpointing", "ckpt")
    if "settings" in run:  # TRL's DPOTrainer defaults
        own = run["settings"]
        return f"policy {own.get('policy_dtype')}, ref {own.get('reference_dtype')}, ckpt {own.get('gradient_checkpointing')}"
    attention = run.get("attention", found.get("attention"))
    return f"HF Trainer, padded to {found.get('max_length')}, {attention}, ckpt {found.get('gradient_checkpointing')}"


def training_rows(report: dict[str, Any], gpu: str) -> list[str]:
    rows, model = [], model_name(report)
    for part, reference in (("sft", "old_recipe"), ("dpo", "trl_defaults")):
        found = figures(report, part)
        base = found.get(reference, {}).get("real_tokens_per_s")
        names = [reference, *(key for key in found if key.startswith("deita_") and isinstance(found[key], dict))]
        for name in names:
            run = found.get(name)
            if not run:
                continue
            label = f"{part}: {name}"
            if "error" in run:
                rows.append(f"| {report['date']} | {gpu} | {label} | {model} | failed: {run['error']} | | | | |")
                continue
            rate = run.get("real_tokens_per_s")
            ratio = f"{rate / base:.2f}×" if rate and base else "–"
            rows.append(f"| {report['date']} | {gpu} | {label} ({settings(run, found)}) | {model} | {_num(rate)} | "
                        f"{ratio} | {_pct(run.get('mfu_of_datasheet_peak'))} | "
                        f"{_pct(run.get('mfu_of_sustained_matmul'))} | {_gib(run.get('peak_memory_gib'))} |")
    return rows


def profile_lines(report: dict[str, Any]) -> list[str]:
    """Where a deita training step's GPU time goes (torch.profiler over the steps after the timed ones)."""
    lines = []
    for part in ("sft", "dpo"):
        for name, run in figures(report, part).items():
            profile = run.get("profile") if isinstance(run, dict) else None
            if profile and profile.get("by_kind"):
                kinds = ", ".join(f"{kind} {_pct(share)}" for kind, share in profile["by_kind"].items())
                lines.append(f"profile of {part}: {name}: {kinds}; busy {_pct(profile.get('busy_share'))} of "
                             f"{profile['wall_seconds']:.2f} s")
    return lines


def prefill_rows(report: dict[str, Any], gpu: str) -> list[str]:
    rows = []
    for part in ("score", "embed", "ifd"):
        found = figures(report, part)
        if not found:
            continue
        rate = found.get("batched_samples_per_s") or found.get("batched_tokens_per_s")
        unit = "samples/s" if "batched_samples_per_s" in found else "tokens/s"
        rows.append(f"| {report['date']} | {gpu} | {part} | {found.get('arch', found.get('model', '?'))} | "
                    f"{_num(rate, 1)} {unit} | {_num(found.get('speedup'), 1)}× | {_num(found.get('achieved_tflops'))} | "
                    f"{_pct(found.get('share_of_sustained_peak'))} | {_pct(found.get('share_of_burst_peak'))} | "
                    f"{_pct(found.get('padding_share'))} |")
    return rows


def score_cli_rows(report: dict[str, Any], gpu: str) -> list[str]:
    found = figures(report, "score_cli")
    rows = []
    for name in ("cold_cache", "warm_cache"):
        run = found.get(name)
        if run:
            rows.append(f"| {report['date']} | {gpu} | `deita score --type {found.get('type')}`, {name.replace('_', ' ')} "
                        f"| {_num(run.get('records'))} | {_num(run.get('wall_seconds'), 1)} s | "
                        f"{_num(run.get('fixed_seconds'), 1)} s | {_num(run.get('steady_records_per_s'), 1)} |")
    return rows


def markdown(report: dict[str, Any]) -> str:
    gpu, lines = header(report)
    out = [f"<!-- benchmarks/gpu_check.sh, {report['date']} -->", "", *[f"- {line}" for line in lines], ""]
    training = training_rows(report, gpu)
    if training:
        out += [("| date | GPU | run | model | real tokens/s | × reference | MFU of 989 TFLOP/s | "
                 "MFU of the sustained matmul rate | peak memory |"), "|---|---|---|---|---|---|---|---|---|", *training, ""]
        out += [*(f"- {line}" for line in profile_lines(report)), ""]
    prefill = prefill_rows(report, gpu)
    if prefill:
        out += [("| date | GPU | benchmark | model | batched rate | × one at a time | useful TFLOP/s | "
                 "share of sustained peak | share of burst peak | padding |"), "|---|---|---|---|---|---|---|---|---|---|",
                *prefill, ""]
    cli = score_cli_rows(report, gpu)
    if cli:
        out += ["| date | GPU | command | records | wall | fixed cost | steady records/s |",
                "|---|---|---|---|---|---|---|", *cli, ""]
    serve = figures(report, "serve")
    if serve:
        shown = ", ".join(f"{key} {value:,.3g}" for key, value in serve.items() if isinstance(value, int | float))
        out += [f"- serve ({gpu}): {shown}", ""]
    out += [f"- {name}: {result['status']}" + (f" ({result['seconds']} s)" if "seconds" in result else "")
            for name, result in report["parts"].items()]
    return "\n".join(out) + "\n"
