"""`deita probe`: measure a selection on the user's own pool with injected known-bad records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from deita.config_layers import Layer

from .flags import INPUT, CommaList, command
from .outputs import echo_lines


def probe_command() -> click.Command:
    from deita.probe.injectors import CLASSES, DEFAULT_CLASSES
    from deita.runtime.devices import DEVICE_HELP
    from deita.select_config import DEFAULT_PRESET, SECTIONS

    output = click.Option(["-o", "--output", "output"], type=click.Path(path_type=Path), required=True,
                          help="The probe's JSON (seeds, counts per class in pool and selection, ratios); its "
                               "mixed pools, selections and caches go to OUTPUT.work/, the page to OUTPUT.html.")
    params = [
        INPUT, output,
        click.Option(["--config", "config_file"], type=click.Path(path_type=Path),
                     help=f"The select config to probe (YAML with sections {', '.join(SECTIONS)})."),
        click.Option(["--preset"], help=f"The preset to probe (paper, offline).  [default: {DEFAULT_PRESET}]"),
        click.Option(["--device"], help=f"{DEVICE_HELP} For every stage."),
        click.Option(["--size"], type=int, help="Records to select (default: the config's "
                     "filter size if it gives one, else 20 % of the probe's pool)."),
        click.Option(["--rate"], type=float, default=0.2,
                     show_default=True, help="Injected records, as a share of the pool's records, split evenly over "
                     "the classes."),
        click.Option(["--seed"], type=int, default=0, show_default=True, help="Seed of the injection."),
        click.Option(["--seeds"], type=CommaList(int), help="Several seeds (e.g. 0,1,2): one probe each, and the "
                     "spread of the ratios; replaces --seed."),
        click.Option(["--classes"], type=CommaList(str), help="Classes to inject: " + "; ".join(
            f"{name}: {entry.help}" for name, entry in CLASSES.items()) + f".  [default: {','.join(DEFAULT_CLASSES)}]"),
    ]

    def run(input: Path, output: Path, config_file: Path | None, preset: str | None, device: str | None,
            size: int | None, rate: float, seed: int, seeds: tuple[int, ...] | None,
            classes: tuple[str, ...] | None) -> None:
        from deita.probe.run import ProbeSettings, run_probe, table_lines
        from deita.report.probe import write_page
        from deita.select_config import SelectConfig

        data = SelectConfig.from_yaml(config_file) if config_file else {}
        given: dict[str, Any] = {"preset": preset} if preset is not None else {}
        config = SelectConfig.build(data, str(config_file) if config_file else "options",
                                    Layer("", given, lambda path: "--" + path), device)
        written = (data.get("filter") or {}).get("size") if isinstance(data.get("filter"), dict) else None
        settings = ProbeSettings(rate, tuple(seeds) if seeds else (seed,),
                                 tuple(classes) if classes else DEFAULT_CLASSES, size)
        result = run_probe(input, output, config, settings, written)
        page = write_page(result, output.with_name(output.name.removesuffix(".json") + ".html"))
        echo_lines([*table_lines(result), f"probe → {output}; page → {page}; its pools and selections in "
                    f"{output.name}.work/"])

    return command("probe", "Measure a selection on your own pool: inject seeded known-bad variants of its records "
                   "(truncated answers, answers to another question, refusals, garbled answers, exact and near "
                   "copies), run the selection the config describes on it, and the random strategy beside it, and "
                   "report per class its share of the selection over its share of the pool (random ≈ 1, a perfect "
                   "selector 0).\n\nThe injected records never leave OUTPUT.work/.\n\nExamples:\n\n  deita probe "
                   "pool.json -o probe.json --preset offline --size 1000\n\n  deita probe pool.json -o probe.json "
                   "--config run.yaml --rate 0.2 --seeds 0,1,2", params, run)
