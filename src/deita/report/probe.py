"""The report's probe section: what `deita probe` measured, as a bar chart and a table. It appears in the
selection report when `deita report --probe probe.json` is given one, and alone on the page `deita probe` writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deita.errors import DeitaError
from deita.report import figures


def read_probe(path: Path) -> dict[str, Any]:
    """A probe JSON written by `deita probe`, checked for the parts the section reads."""
    try:
        result = json.loads(Path(path).read_text())
        classes, summary, runs = result["classes"], result["summary"], result["runs"]
        for name in [*classes, "all"]:
            summary[name]["selector"]["mean"], summary[name]["random"]["mean"]  # noqa: B018 (checked to exist)
        runs[0]["pool_counts"], result["selector"]["strategy"]  # noqa: B018
    except (OSError, ValueError) as err:
        raise DeitaError(f"--probe {path}: not a readable probe JSON ({err})") from None
    except (KeyError, TypeError, IndexError) as err:
        raise DeitaError(f"--probe {path}: not a probe JSON written by deita probe (missing {err})") from None
    return result


def probe_context(result: dict[str, Any]) -> dict[str, Any]:
    """What the template's probe section shows: the chart, one row per class, and how it was measured."""
    names = [*result["classes"], "all"]
    selector = result["selector"]
    label = f"{selector['preset']}/{selector['strategy']}"
    summary = result["summary"]
    runs = result["runs"]
    rows = []
    for name in names:
        counts = [sum(r["pool_counts"].values()) if name == "all" else r["pool_counts"][name] for r in runs]
        rows.append({"name": name, "pool": round(sum(counts) / len(counts)), "selector": summary[name]["selector"],
                     "random": summary[name]["random"]})
    image = figures.probe_bars(names, [summary[n]["selector"]["mean"] for n in names],
                               [summary[n]["random"]["mean"] for n in names], label)
    return {"image": image, "rows": rows, "label": label, "seeds": result["seeds"], "rate": result["rate"],
            "size": runs[0]["size"], "pool_records": runs[0]["pool_records"], "sort_key": selector.get("sort_key"),
            "several": len(runs) > 1}


def write_page(result: dict[str, Any], path: Path) -> Path:
    """The probe section alone, as a self-contained page at `path`."""
    import jinja2

    environment = jinja2.Environment(loader=jinja2.PackageLoader("deita.report", "."),
                                     autoescape=jinja2.select_autoescape(["html", "j2"]),
                                     undefined=jinja2.StrictUndefined)
    html = environment.get_template("probe.html.j2").render(probe=probe_context(result))
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(html, encoding="utf-8")
    temporary.replace(path)
    return path
