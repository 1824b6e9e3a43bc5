"""A grid's table and curves, rebuilt from its cell files alone (``alm grid report``).

Per dataset and variant: the interquartile mean of the seeds' scores with its 95%
stratified-bootstrap interval, the mean and std; per dataset the probability that the
grid's first compared method beats the second, with its interval (``tools/stats.py``,
rliable); the cells not measured yet; the model KL ranges; and one figure of the mean
normalised score over seeds with its 95% band per variant, one panel per dataset.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from alm_offline.errors import first_line
from alm_offline.runtime.files import write_text_atomic
from alm_offline.tools.grid_file import Grid, GridError
from alm_offline.tools.grid_records import read_cells, read_seed_entries
from alm_offline.tools.plotting import DPI, SUBPLOT_SIZE, save_figure
from alm_offline.tools.stats import mean_interval, probability_of_improvement, summarise_seeds

README_START = "<!-- grid:{name}:start -->"
README_END = "<!-- grid:{name}:end -->"


def _scores(record: dict) -> list[float]:
    return [seed["score"] for seed in record["seeds"].values()]


def _variants(grid: Grid) -> list[tuple[str, str]]:
    """(variant, label) in first-seen order."""
    seen: dict[str, str] = {}
    for cell in grid.cells:
        seen.setdefault(cell.variant, cell.label)
    return list(seen.items())


def score_table(grid: Grid, records: dict[str, dict]) -> str:
    """Markdown: a row per dataset, a column per variant (``IQM [95% CI]``, then ``mean ±
    std``), P(first compared beats second) [95% CI] and the data's own score; "–" where the
    grid has no such cell, "not measured" where the cell has no file yet."""
    variants = _variants(grid)
    first, second = grid.compare
    datasets = list(dict.fromkeys(cell.dataset for cell in grid.cells))
    header = [label for _, label in variants] + [f"P({first} > {second})", "data"]
    lines = ["| dataset | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for dataset in datasets:
        texts = []
        for variant, _ in variants:
            slug = f"{dataset}--{variant}"
            if not any(c.slug == slug for c in grid.cells):
                texts.append("–")
            elif slug not in records:
                texts.append("not measured")
            else:
                s = summarise_seeds(_scores(records[slug]))
                texts.append(f"{s.iqm.describe()}<br>{s.mean:.1f} ± {s.std:.1f}")
        pair = [records.get(f"{dataset}--{v}") for v in (first, second)]
        if all(pair):
            texts.append(probability_of_improvement(*map(_scores, pair)).describe(2))
        else:
            texts.append("–")
        data = grid.data_scores.get(dataset)
        texts.append("–" if data is None else f"{data:.1f}")
        lines.append(f"| {dataset} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


def kl_table(grid: Grid, records: dict[str, dict]) -> str:
    """Markdown: the model's KL (nats) over each ALM cell's run, min-max over its seeds,
    against the grid's online reference (``kl_reference``); "" without an ALM cell."""
    rows = []
    reference = grid.kl_reference
    for slug, record in records.items():
        kls = [s["model_kl"] for s in record["seeds"].values() if s.get("model_kl")]
        if not kls:
            continue
        low = min(k["min"] for k in kls)
        high = max(k["max"] for k in kls)
        ends = [k["last"] for k in kls]
        ratio = f" | {high / reference[1]:.1f}x" if reference else ""
        rows.append(f"| {slug} | {low:.0f} | {high:.0f} | {min(ends):.0f}-{max(ends):.0f}{ratio} |")
    if not rows:
        return ""
    head = "| cell | model KL min | model KL max | at the end |"
    if reference:
        head += " max / online max |"
    lines = [
        "Model KL (nats, `model/kl` of every logged update, over all seeds)"
        + (
            f"; online ALM at these widths ran {reference[0]:g}-{reference[1]:g} "
            f"(3x its max: {3 * reference[1]:g}):"
            if reference
            else ":"
        ),
        "",
        head,
        "|---" * (head.count("|") - 1) + "|",
        *rows,
    ]
    return "\n".join(lines) + "\n"


CELLS_READING = "Cells as `IQM [95% CI]` (rliable, stratified bootstrap) over `mean ± std`."


def provenance(grid: Grid, records: dict[str, dict], reading: str = CELLS_READING) -> str:
    """Seeds, configs, protocol, how the cells read (``reading``), commits, CPUs and data
    digests of the cells, and what is missing."""
    missing = [cell.slug for cell in grid.cells if cell.slug not in records]
    own = {}
    for cell in grid.cells:
        if cell.config:
            own.setdefault(cell.config, []).append(cell.variant)
    configs = "".join(
        f" ({', '.join(dict.fromkeys(variants))}: `{name}`)" for name, variants in own.items()
    )
    lines = [
        f"Seeds {', '.join(map(str, grid.seeds))}; config `{grid.config}`{configs}; "
        + (next(iter(records.values()))["protocol"] if records else "no cell measured yet")
        + f". {reading}",
    ]
    # a cell whose seeds ran at several commits lists them all ("a, b")
    commits = sorted({c[:12] for r in records.values() for c in r["commit"].split(", ")})
    cpus = sorted({r["cpu"] for r in records.values()})
    if records:
        lines.append(f"Measured at commit(s) {', '.join(commits)} on {'; '.join(cpus)}.")
        digests = next(iter(records.values()))["data_sha256"]
        if any(r["data_sha256"] != digests for r in records.values()):
            lines.append("**The cells' data files differ (sha256): they do not compare.**")
    lines.append(
        "Not measured yet: " + ", ".join(_landed_so_far(grid, slug) for slug in missing) + "."
        if missing
        else "Every cell is measured."
    )
    return "\n".join(lines) + "\n"


def _landed_so_far(grid: Grid, slug: str) -> str:
    """``slug``, and the seeds of it that have landed with their scores (a cell counts in
    the tables only when whole; its landed seeds are said, not summarised)."""
    cell = next(cell for cell in grid.cells if cell.slug == slug)
    try:
        entries = read_seed_entries(grid, cell, grid.folder)
    except GridError:  # a seed file it cannot vouch for (e.g. its data not here)
        return slug
    if not entries:
        return slug
    scores = ", ".join(f"{entries[seed]['record']['score']:.1f}" for seed in sorted(entries))
    seeds = ", ".join(map(str, sorted(entries)))
    plural = "s" if len(entries) > 1 else ""
    return f"{slug} (seed{plural} {seeds} of {len(grid.seeds)} landed, score{plural} {scores})"


def plot_grid_curves(grid: Grid, records: dict[str, dict], out: Path) -> Path | None:
    """One panel per dataset: each variant's mean score over seeds with its 95% band."""
    from matplotlib.figure import Figure

    datasets = list(dict.fromkeys(r["dataset"] for r in records.values()))
    if not datasets:
        return None
    columns = min(len(datasets), 3)
    rows = math.ceil(len(datasets) / columns)
    fig = Figure(figsize=(SUBPLOT_SIZE[0] * columns, SUBPLOT_SIZE[1] * rows), dpi=DPI)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, dataset in zip(axes, datasets, strict=False):
        for record in (r for r in records.values() if r["dataset"] == dataset):
            curves = [s["evaluations"] for s in record["seeds"].values()]
            common = sorted(set.intersection(*({e["updates"] for e in c} for c in curves)))
            values = np.array(
                [[e["score"] for e in c if e["updates"] in set(common)] for c in curves]
            )
            mean, low, high = mean_interval(values)
            line = ax.plot(common, mean, label=f"{record['label']} ({len(curves)} seeds)")[0]
            ax.fill_between(common, low, high, color=line.get_color(), alpha=0.2)
        if dataset in grid.data_scores:
            score = grid.data_scores[dataset]
            ax.axhline(score, color="gray", linestyle="--", label=f"the data ({score:g})")
        ax.set_title(f"{grid.name} {dataset}")
        ax.set_xlabel("updates")
        ax.set_ylabel("D4RL-normalised score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(datasets) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return save_figure(fig, out)


def grid_markdown(grid: Grid, records: dict[str, dict]) -> str:
    return "\n".join(
        [score_table(grid, records), provenance(grid, records), kl_table(grid, records)]
    )


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with what stands between the grid's two README markers replaced by ``body``."""
    start, end = README_START.format(name=name), README_END.format(name=name)
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise GridError(f"no '{start}' ... '{end}' section to rebuild")
    return pattern.sub(lambda _: f"{start}\n{body}{end}", text, count=1)


def grid_report(
    grid: Grid,
    readme: Path | None = None,
    markdown: Callable[[Grid, dict[str, dict]], str] = grid_markdown,
    plot: Callable[[Grid, dict[str, dict], Path], Path | None] = plot_grid_curves,
) -> list[Path]:
    """Write ``results.md`` and ``curves.png`` beside the grid file and, given ``readme``,
    its marked section (checked before anything is written); returns the files written.
    ``markdown`` and ``plot`` build them from the cells' records (an online grid passes
    ``online_report``'s)."""
    text = None
    if readme is not None:  # read, its markers found, before anything is written
        text = read_readme(readme)
        replace_section(text, grid.name, "")
    records = read_cells(grid)
    body = markdown(grid, records)
    written = [grid.folder / "results.md"]
    write_text_atomic(written[0], f"# {grid.name}\n\n{body}")
    curves = plot(grid, records, grid.folder / "curves.png")
    if curves is not None:
        written.append(curves)
    if readme is not None:
        write_text_atomic(readme, replace_section(text, grid.name, body))
        written.append(readme)
    return written


def read_readme(readme: Path) -> str:
    """The text of the file whose marked section a report rebuilds (``GridError``)."""
    try:
        return readme.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GridError(f"cannot read '{readme}': {first_line(exc)}") from None
