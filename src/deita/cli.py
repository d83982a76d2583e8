"""The `deita` command: each command builds a config from its flags and calls the core."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer
from rich.console import Console

from deita.errors import DeitaError
from deita.runtime.batching import DEFAULT_BATCH_TOKENS

app = typer.Typer(
    help="Deita: pick the few thousand best instruction-tuning samples from a large pool "
    "(complexity × quality scores, diversity-aware selection).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
_state = {"debug": False}

FormatOpt = typer.Option(None, "--format", help="Input format: sharegpt, alpaca or messages (default: detected).")
OnErrorOpt = typer.Option("fail", "--on-error", help="fail: stop at the first bad record; skip: write bad records "
                          "to OUTPUT.rejects.jsonl with the reason and continue.")
PairingOpt = typer.Option("role", "--pairing", help="role (correct) or positional (reproduces the old toolkit).")
ShardOpt = typer.Option(1024, "--shard-size", help="Records per shard (the unit of resumable progress).")
CacheOpt = typer.Option(None, "--cache-dir", help="Where finished shards are kept (default: OUTPUT.cache/).")
ExecutorOpt = typer.Option("local", "--executor", help="local (this process) or ray (Ray Data, many GPUs/nodes).")
RayAddressOpt = typer.Option(None, "--ray-address", help="Ray cluster address; 'auto' joins a running one.")
WorkersOpt = typer.Option(None, "--num-workers", help="Ray workers (default: one per GPU, else per 2 CPU cores).")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bar.")


@app.callback()
def main_options(debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs.")) -> None:
    _state["debug"] = debug
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("deita").setLevel(logging.DEBUG if debug else logging.INFO)
    if not debug:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def _run_options(fmt, pairing, on_error, shard_size, cache_dir, executor, ray_address, num_workers, quiet):
    from deita.runtime.runner import RunOptions

    return RunOptions(format=fmt, pairing=pairing, on_error=on_error, shard_size=shard_size, cache_dir=cache_dir,
                      executor=executor, ray_address=ray_address, num_workers=num_workers, quiet=quiet)


def _print(lines: list[str]) -> None:
    for line in lines:
        out.print(line, highlight=False, markup=False)


@app.command()
def validate(
    input: Path = typer.Argument(..., help="A .json, .jsonl, .parquet file or a saved HF datasets directory."),
    fmt: str | None = FormatOpt,
    pairing: str = PairingOpt,
) -> None:
    """Check a data file: counts records and turns, lists every problem; exits 1 if there is any.

    Example: deita validate data.jsonl
    """
    from deita.data.validate import validate_file

    report = validate_file(input, fmt=fmt, pairing=pairing)
    _print([f"{report.path}: {report.records:,} records, {report.turns:,} turns, format {report.format}, "
            f"file type {report.file_type}"])
    _print([f"note: {note}" for note in report.notes])
    _print([f"problem: {problem}" for problem in report.problems])
    if report.problems:
        _print([f"{len(report.problems):,} problems found (use --on-error skip in other commands to set such "
                "records aside)"])
        raise typer.Exit(1)
    _print(["no problems found"])


@app.command()
def convert(
    input: Path = typer.Argument(..., help="Input data file."),
    output: Path = typer.Option(..., "-o", "--output", help="Output file (.json, .jsonl, .parquet)."),
    to: str = typer.Option(..., "--to", help="Target format: sharegpt, alpaca or messages."),
    fmt: str | None = FormatOpt,
    on_error: str = OnErrorOpt,
) -> None:
    """Convert between ShareGPT, Alpaca and chat-messages records, keeping every other field.

    Example: deita convert alpaca.json -o sharegpt.jsonl --to sharegpt
    """
    from deita.data.io import ReadStats, RejectsWriter, convert_file, rejects_path_for

    stats = ReadStats()
    rejects = RejectsWriter(rejects_path_for(output)) if on_error == "skip" else None
    try:
        count = convert_file(input, output, to, fmt=fmt, on_error=on_error, rejects=rejects, stats=stats)
    finally:
        if rejects is not None:
            rejects.close()
    _print([f"converted {count:,} of {stats.records:,} records from {stats.format} to {to} → {output}"])
    if stats.rejected:
        _print([f"rejected {stats.rejected:,} records → {rejects_path_for(output)}"])


@app.command()
def score(
    input: Path = typer.Argument(..., help="Input data file."),
    output: Path = typer.Option(..., "-o", "--output", help="Scored output (same format as the input)."),
    type: str = typer.Option("complexity", "--type", help="complexity (instruction) or quality (instruction+response)."),
    model: str = typer.Option("", "--model", help="Scorer hub id or directory (default hkust-nlp/deita-TYPE-scorer)."),
    backend: str = typer.Option("hf", "--backend", help="hf, vllm or openai (OpenAI-compatible server)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    dtype: str = typer.Option("auto", "--dtype", help="Model dtype: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16."),
    batch_tokens: int = typer.Option(DEFAULT_BATCH_TOKENS, "--batch-tokens", help="Token budget of one batch."),
    max_length: int = typer.Option(2048, "--max-length", help="Scorer context; longer prompts are truncated inside the text."),
    score_token_ids: str | None = typer.Option(None, "--score-token-ids", help="Six comma-separated ids for 1..6."),
    base_url: str = typer.Option("http://127.0.0.1:8000/v1", "--base-url", help="openai backend: server URL."),
    served_model: str | None = typer.Option(None, "--served-model", help="openai backend: model name on the server."),
    concurrency: int = typer.Option(16, "--concurrency", help="openai backend: requests in flight."),
    max_logprobs: int = typer.Option(20, "--max-logprobs", help="openai/vllm: the server's log-prob cap."),
    strict: bool = typer.Option(False, "--strict", help="openai: a digit missing from the top-k is an error."),
    compile: bool | None = typer.Option(None, "--compile/--no-compile",
                                        help="hf: torch.compile the decoder layers (default: on a GPU)."),
    fmt: str | None = FormatOpt, pairing: str = PairingOpt, on_error: str = OnErrorOpt,
    shard_size: int = ShardOpt, cache_dir: str | None = CacheOpt, executor: str = ExecutorOpt,
    ray_address: str | None = RayAddressOpt, num_workers: int | None = WorkersOpt, quiet: bool = QuietOpt,
) -> None:
    """Score every turn with a Deita scorer; adds complexity_scores or quality_scores to each record.

    Resumable: rerun the same command after an interruption and finished shards are reused.

    Example: deita score data.json -o scored.json --type quality --model hkust-nlp/deita-quality-scorer
    """
    from deita.scoring.run import score_file
    from deita.scoring.scorer import ScoreConfig

    token_ids = tuple(int(x) for x in score_token_ids.split(",")) if score_token_ids else None
    config = ScoreConfig(type=type, model=model, backend=backend, device=device, dtype=dtype,
                         batch_tokens=batch_tokens, max_length=max_length, score_token_ids=token_ids,
                         base_url=base_url, served_model=served_model, concurrency=concurrency,
                         max_logprobs=max_logprobs, strict=strict, compile=compile)
    options = _run_options(fmt, pairing, on_error, shard_size, cache_dir, executor, ray_address, num_workers, quiet)
    _print(score_file(input, output, config, options).lines())


@app.command()
def embed(
    input: Path = typer.Argument(..., help="Input data file."),
    output: Path = typer.Option(..., "-o", "--output", help="Embeddings .npy (rows in input order)."),
    kind: str = typer.Option("sentence", "--kind", help="causal (Deita: LLM last-token state) or sentence."),
    model: str = typer.Option("", "--model", help="Hub id or directory (default: packaged all-MiniLM-L6-v2)."),
    max_length: int = typer.Option(2048, "--max-length", help="Tokens kept per conversation (causal)."),
    only_answer: bool = typer.Option(False, "--only-answer", help="Embed only the assistant messages."),
    dtype: str = typer.Option("", "--dtype", help="Output dtype: float16 (causal default) or float32."),
    model_dtype: str = typer.Option("auto", "--model-dtype", help="Compute dtype: auto, float32, bfloat16."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    batch_tokens: int = typer.Option(DEFAULT_BATCH_TOKENS, "--batch-tokens", help="Token budget of one batch (causal)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Batch size (sentence)."),
    compile: bool | None = typer.Option(None, "--compile/--no-compile",
                                        help="causal: torch.compile the decoder layers (default: on a GPU)."),
    fmt: str | None = FormatOpt, pairing: str = PairingOpt, on_error: str = OnErrorOpt,
    shard_size: int = ShardOpt, cache_dir: str | None = CacheOpt, executor: str = ExecutorOpt,
    ray_address: str | None = RayAddressOpt, num_workers: int | None = WorkersOpt, quiet: bool = QuietOpt,
) -> None:
    """Embed every conversation into a memory-mappable .npy for the diversity filter. Resumable.

    Example: deita embed scored.json -o emb.npy --kind causal --model mistralai/Mistral-7B-v0.1
    """
    from deita.embedding.embedder import EmbedConfig
    from deita.embedding.run import embed_file

    config = EmbedConfig(kind=kind, model=model, max_length=max_length, only_answer=only_answer, dtype=dtype,
                         model_dtype=model_dtype, device=device, batch_tokens=batch_tokens, batch_size=batch_size,
                         compile=compile)
    options = _run_options(fmt, pairing, on_error, shard_size, cache_dir, executor, ray_address, num_workers, quiet)
    _print(embed_file(input, output, config, options).lines())


@app.command(name="filter")
def filter_command(
    input: Path = typer.Argument(..., help="Scored data file (from `deita score`)."),
    output: Path = typer.Option(..., "-o", "--output", help="Selected records, in selection order."),
    embeddings: Path | None = typer.Option(None, "--embeddings", help="EMB.npy from `deita embed` (deita, kcenter)."),
    size: int = typer.Option(6000, "--size", help="Samples to select; -1 walks the whole pool."),
    threshold: float = typer.Option(0.9, "--threshold", help="Reject a candidate whose cosine similarity to an "
                                    "accepted sample is above this."),
    sort_key: str = typer.Option("complexity_scores,quality_scores", "--sort-key",
                                 help="Comma-separated per-turn score fields; Σ over turns of their product ranks."),
    strategy: str = typer.Option("deita", "--strategy", help="deita, random, score, length or kcenter."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    block_size: int = typer.Option(1024, "--block-size", help="Candidates per matrix product (result unchanged)."),
    seed: int = typer.Option(42, "--seed", help="Seed for random and kcenter."),
    stats: Path | None = typer.Option(None, "--stats", help="Write selection statistics as JSON here."),
    fmt: str | None = FormatOpt,
) -> None:
    """Select the best diverse samples: score-first, skipping near-duplicates of what was already taken.

    Example: deita filter scored.jsonl --embeddings emb.npy -o selected.jsonl --size 6000 --stats stats.json
    """
    from deita.selection.run import FilterConfig, filter_file

    config = FilterConfig(size=size, threshold=threshold, sort_key=tuple(k.strip() for k in sort_key.split(",") if k.strip()),
                          strategy=strategy, device=device, block_size=block_size, seed=seed)
    _print(filter_file(input, output, config, embeddings, fmt=fmt, stats_path=stats).lines())


@app.command()
def select(
    input: Path = typer.Argument(..., help="The pool: a data file in any supported format."),
    output: Path = typer.Option(..., "-o", "--output", help="Selected records (stage outputs go to OUTPUT.work/)."),
    size: int | None = typer.Option(None, "--size", help="Samples to select (default 6000); -1 for all."),
    config_file: Path | None = typer.Option(None, "--config", help="YAML with sections complexity, quality, "
                                               "embed, filter, run (keys as the flags of each command)."),
    preset: str | None = typer.Option(None, "--preset", help="paper (Deita scorers, Mistral-7B embeddings) or "
                                         "offline (length scores + packaged MiniLM; no network, no GPU)."),
    threshold: float | None = typer.Option(None, "--threshold", help="Diversity threshold (default 0.9)."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda, for every stage."),
    on_error: str | None = typer.Option(None, "--on-error", help="fail or skip (bad input records)."),
    executor: str | None = typer.Option(None, "--executor", help="local or ray, for scoring and embedding."),
    ray_address: str | None = RayAddressOpt, num_workers: int | None = WorkersOpt, quiet: bool = QuietOpt,
) -> None:
    """The whole Deita pipeline: complexity and quality scoring, embedding, diversity-aware filtering.

    Each stage is cached next to OUTPUT, so rerunning the same command resumes; the effective config is
    saved as OUTPUT.config.yaml.

    Examples:
      deita select examples/sample.jsonl -o out/selected.jsonl --size 20 --preset offline
      deita select pool.json -o deita6k.json --size 6000 --config run.yaml
    """
    from deita.workflow import SelectConfig, run_select

    data: dict = {}
    if config_file:
        import yaml

        data = yaml.safe_load(config_file.read_text()) or {}
        if not isinstance(data, dict):
            raise DeitaError(f"{config_file}: expected a mapping of sections (complexity, quality, embed, filter, run)")
    overrides = {"filter": {"size": size, "threshold": threshold},
                 "run": {"on_error": on_error, "executor": executor, "ray_address": ray_address,
                         "num_workers": num_workers, "quiet": quiet or None}}
    if device:
        for section in ("complexity", "quality", "embed", "filter"):
            overrides.setdefault(section, {})["device"] = device
    for section, values in overrides.items():
        data.setdefault(section, {})
        data[section] = {**(data[section] or {}), **{k: v for k, v in values.items() if v is not None}}
    if preset:
        data["preset"] = preset
    config = SelectConfig.from_mapping(data, str(config_file or "options"))
    _print(run_select(input, output, config))


def main() -> None:
    """Entry point: people get a one-line error, not a traceback (unless --debug)."""
    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except DeitaError as err:
        if _state["debug"]:
            raise
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        sys.exit(1)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except typer.Abort:
        console.print("aborted")
        sys.exit(130)
    except Exception as err:  # click usage errors and the like
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        raise
