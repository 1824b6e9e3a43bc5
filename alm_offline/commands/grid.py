"""``alm grid``: a results grid that lands cell by cell (run, report)."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def grid() -> None:
    """A results grid that lands cell by cell: run its cells, rebuild its table and plots."""


@grid.command("run")
@click.argument("grid_file", metavar="GRID.yaml")
@click.option("--work-dir", default=None, help="Cells' sweep folders [default: sweeps/grid-NAME].")
@click.option("--results", default=None, help="Cell files' folder [default: beside GRID.yaml].")
@click.option("--data", default=None, help="The datasets' folder [default: the grid file's].")
@click.option("--python", "python", default=None, help="The baselines' interpreter (d3rlpy).")
@click.option(
    "--only", default=None, help="Comma-separated cells (DATASET--VARIANT, online ENV--VARIANT)."
)
@click.option("--commit", is_flag=True, help="git-commit each cell file as soon as it is written.")
@click.option(
    "--address",
    default=None,
    help="Ray cluster host:port for the cells' sweeps [default: each starts its own]; "
    "`ray start --head --num-cpus 1` then --address auto trains one trial at a time.",
)
@click.option(
    "--cells-at-once",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="How many cells' sweeps run at a time (with --address, they share its slots).",
)
def grid_run_command(
    grid_file: str,
    work_dir: str | None,
    results: str | None,
    data: str | None,
    python: str | None,
    only: str | None,
    commit: bool,
    address: str | None,
    cells_at_once: int,
) -> None:
    """Train GRID.yaml's cells without a file yet, in order (interrupted ones resume)."""
    from alm_offline.tools.grid_file import load_grid
    from alm_offline.tools.grid_run import run_grid

    spec = load_grid(grid_file, data)
    written = run_grid(
        spec,
        Path(work_dir or f"sweeps/grid-{spec.name}"),
        results=Path(results) if results else None,
        python=python,
        only=[part.strip() for part in only.split(",")] if only else (),
        commit=commit,
        address=address,
        cells_at_once=cells_at_once,
        echo=click.echo,
    )
    click.echo(f"{len(written)} cell(s) written; the rest were there already")


@grid.command("report")
@click.argument("grid_file", metavar="GRID.yaml")
@click.option("--readme", default=None, help="A file whose grid section to rebuild (README.md).")
@click.option("--data", default=None, help="The datasets' folder [default: the grid file's].")
def grid_report_command(grid_file: str, readme: str | None, data: str | None) -> None:
    """Rebuild GRID.yaml's results.md, curves.png (and a README's section) from its cells
    (an online grid's: returns at its read_at env steps, the area, P(ALM > SAC), seconds)."""
    from alm_offline.tools.grid_file import load_grid
    from alm_offline.tools.grid_report import grid_report
    from alm_offline.tools.online_report import online_report

    spec = load_grid(grid_file, data)
    report = online_report if spec.online else grid_report
    for path in report(spec, Path(readme) if readme else None):
        click.echo(f"wrote {path}")


@grid.command("summary")
@click.argument("summary_file", metavar="SUMMARY.yaml")
@click.option("--readme", default=None, help="A file whose summary section to rebuild.")
def grid_summary_command(summary_file: str, readme: str | None) -> None:
    """One table over several grids (each env's datasets, the means over each env and over
    all), rebuilt from their cell files into SUMMARY.md (and a README's section)."""
    from alm_offline.tools.grid_summary import load_summary, summary_report

    for path in summary_report(load_summary(summary_file), Path(readme) if readme else None):
        click.echo(f"wrote {path}")
