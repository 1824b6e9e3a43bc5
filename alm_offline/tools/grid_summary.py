"""One table over several grids: ``alm grid summary SUMMARY.yaml`` (issue 47's nine datasets).

A summary file names grid files (one env each), the methods as table columns (each a variant
of every grid), the datasets and a comparison: P(first method beats the better of the
others), where the better is the one with the higher IQM on that dataset, the field's "best
baseline". The table has a row per grid and dataset with each method's IQM [95% CI] and the
comparison, then each method's mean over each env's datasets and over all of them (the
field's "locomotion average": the mean over datasets of the seeds' mean score), the means
given only where every cell under them is measured. Rebuilt from the cell files alone,
into ``SUMMARY.md`` beside the summary file and, given a README, its marked section.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from alm_offline.runtime.files import write_text_atomic
from alm_offline.tools.grid_file import Grid, GridError, load_grid, need_key, read_yaml_mapping
from alm_offline.tools.grid_records import read_cells
from alm_offline.tools.grid_report import read_readme, replace_section
from alm_offline.tools.stats import SeedSummary, probability_of_improvement, summarise_seeds


@dataclass(frozen=True)
class Summary:
    path: Path
    name: str
    grids: tuple[Grid, ...]
    methods: dict[str, str]  # column label -> variant
    datasets: tuple[str, ...]
    compare: tuple[str, tuple[str, ...]]  # (method, the methods it is compared with)
    caption: str


def load_summary(path: str | Path) -> Summary:
    """Read and check a summary file; its grid paths are relative to the current folder."""
    path = Path(path)
    raw = read_yaml_mapping(path, "summary file")
    for key, kind in (("name", str), ("grids", list), ("methods", dict), ("datasets", list)):
        need_key(raw, key, kind, path)
    methods = {str(label): str(variant) for label, variant in raw["methods"].items()}
    compare = raw.get("compare")
    if (
        not isinstance(compare, list)
        or len(compare) != 2
        or not isinstance(compare[1], list)
        or not {compare[0], *compare[1]} <= set(methods)
    ):
        raise GridError(f"'{path}': 'compare' must be [METHOD, [METHOD, ...]] of {list(methods)}")
    grids = tuple(load_grid(grid) for grid in raw["grids"])
    return Summary(
        path=path,
        name=raw["name"],
        grids=grids,
        methods=methods,
        datasets=tuple(str(d) for d in raw["datasets"]),
        compare=(str(compare[0]), tuple(str(m) for m in compare[1])),
        caption=str(raw.get("caption", "")),
    )


def _scores(records: dict[str, dict], dataset: str, variant: str) -> list[float] | None:
    record = records.get(f"{dataset}--{variant}")
    return None if record is None else [seed["score"] for seed in record["seeds"].values()]


def summary_table(summary: Summary) -> str:
    """The markdown table (see the module docstring)."""
    labels = list(summary.methods)
    first, others = summary.compare
    header = [*labels, f"P({first} > best of {', '.join(others)})"]
    lines = ["| env | dataset | " + " | ".join(header) + " |", "|---" * (len(header) + 2) + "|"]
    means: dict[str, dict[str, list[float | None]]] = {}
    for grid in summary.grids:
        records = read_cells(grid)
        env_means = means.setdefault(grid.env, {label: [] for label in labels})
        for dataset in summary.datasets:
            scores = {
                label: _scores(records, dataset, variant)
                for label, variant in summary.methods.items()
            }
            summaries = {
                label: summarise_seeds(values)
                for label, values in scores.items()
                if values is not None
            }
            texts = []
            for label in labels:
                if label not in summaries:
                    texts.append("not measured")
                    env_means[label].append(None)
                else:
                    texts.append(summaries[label].iqm.describe())
                    env_means[label].append(summaries[label].mean)
            texts.append(_compare_text(scores, summaries, first, others))
            lines.append(f"| {grid.env} | {dataset} | " + " | ".join(texts) + " |")
    for env, by_label in means.items():
        lines.append(_mean_row(f"{env} mean", by_label, labels))
    everything = {label: [v for env in means.values() for v in env[label]] for label in labels}
    count = len(next(iter(everything.values())))
    lines.append(_mean_row(f"**mean of all {count}**", everything, labels))
    return "\n".join(lines) + "\n"


def _compare_text(
    scores: dict[str, list[float] | None],
    summaries: dict[str, SeedSummary],
    first: str,
    others: tuple[str, ...],
) -> str:
    """P(first beats the other with the higher IQM) [95% CI] (that other), or "–"."""
    if not {first, *others} <= set(summaries):
        return "–"
    best = max(others, key=lambda other: summaries[other].iqm.value)
    return f"{probability_of_improvement(scores[first], scores[best]).describe(2)} ({best})"


def _mean_row(title: str, by_label: dict[str, list[float | None]], labels: list[str]) -> str:
    cells = []
    for label in labels:
        values = by_label[label]
        cells.append("–" if any(v is None for v in values) else f"{np.mean(values):.1f}")
    return f"| {title} | | " + " | ".join(cells) + " | |"


def summary_report(summary: Summary, readme: Path | None = None) -> list[Path]:
    """Write ``NAME.md`` beside the summary file and, given ``readme``, its marked section
    (``<!-- grid:NAME:start -->`` ... ``end``); everything is built before anything is written."""
    text = None
    if readme is not None:  # read (and its markers found) before the table is built
        text = read_readme(readme)
        replace_section(text, summary.name, "")
    body = summary_table(summary) + (f"\n{summary.caption}\n" if summary.caption else "")
    if text is not None:
        text = replace_section(text, summary.name, body)
    out = summary.path.with_suffix(".md")
    write_text_atomic(out, f"# {summary.name}\n\n{body}")
    written = [out]
    if readme is not None:
        write_text_atomic(readme, text)
        written.append(readme)
    return written
