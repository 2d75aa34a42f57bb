"""Explain why two tracked runs differ: config keys, environment, code, data fingerprints, and where their curves diverge.

Plain text in the terminal; --html FILE writes the same report as one self-contained page (images inline).
Exit 0: the runs are the same (config, data, code, numeric packages, hardware and every metric); exit 1: they
differ, as with diff(1); exit 2: bad input (an unknown run).
"""

from __future__ import annotations

import argparse

MAX_FILES = 12


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainlab.cli import add_tracking_uri

    parser.add_argument("run_a", metavar="RUN_A", help="first run id (or study:NAME for a study's best trial)")
    parser.add_argument("run_b", metavar="RUN_B", help="second run id")
    parser.add_argument("--html", metavar="FILE", default=None, help="also write the report as a self-contained HTML page")
    add_tracking_uri(parser)


def run(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    from trainlab.errors import ConfigError
    from trainlab.reproduce.audit import INFO, changed_files, config_differences, data_differences, environment_differences
    from trainlab.reproduce.compare import compare_histories
    from trainlab.reproduce.recorded import config_edits, load_recorded, open_store
    from trainlab.reproduce.report import Table, comparison_table, curves_figure, figure_png, html_page
    from trainlab.reproduce.study_runs import resolve_run_reference
    from trainlab.tracking.store import resolve_tracking_uri

    if args.html and not Path(args.html).resolve().parent.is_dir():
        raise ConfigError("--html", args.html, "a file path in an existing directory")
    client = open_store(resolve_tracking_uri(args.tracking_uri))
    with tempfile.TemporaryDirectory(prefix="trainlab-diff-") as workdir:
        a = load_recorded(client, resolve_run_reference(client, args.run_a), required=(), workdir=workdir)
        b = load_recorded(client, resolve_run_reference(client, args.run_b), required=(), workdir=workdir)

    lines = [f"A: {a.describe()}", f"B: {b.describe()}"]
    differ: list[str] = []  # what differs, for the last line and the exit code
    tables = []
    edits = [[name, key, _show(logged), _show(edited)] for name, run in (("A", a), ("B", b)) for key, logged, edited in config_edits(run)]
    if edits:
        differ.append("config.yaml edited")
        tables.append(Table("config.yaml edited after the run (params keep what ran)", ["run", "key", "param", "config.yaml"], edits))
    if a.config is None or b.config is None:
        lines.append(f"config: not recorded for {'A' if a.config is None else 'B'}")
    else:
        rows = [[key, _show(old), _show(new)] for key, old, new in config_differences(a.config, b.config)]
        differ += ["config"] if rows else []
        tables.append(Table("config keys that differ", ["key", "A", "B"], rows, empty="identical (tracking section aside)"))
    if a.environment is None or b.environment is None:
        lines.append(f"environment: not recorded for {'A' if a.environment is None else 'B'}")
    else:
        differences = environment_differences(a.environment, b.environment)
        rows = [[d.aspect, d.recorded, d.now, d.effect] for d in differences]
        differ += sorted({d.aspect.split(":")[0] for d in differences if d.effect != INFO})
        tables.append(Table("environment and code", ["aspect", "A", "B", "effect"], rows, empty="identical"))
        files = changed_files(a.code_diff, b.code_diff)
        if files:
            shown = [[f] for f in files[:MAX_FILES]] + ([[f"... and {len(files) - MAX_FILES} more"]] if len(files) > MAX_FILES else [])
            tables.append(Table("files whose uncommitted changes differ", ["file"], shown))
    rows = [[d.aspect, d.recorded, d.now] for d in data_differences(a.data_fingerprint, b.data_fingerprint)]
    differ += ["data"] if any(d.effect != INFO for d in data_differences(a.data_fingerprint, b.data_fingerprint)) else []
    tables.append(Table("data fingerprints", ["split", "A", "B"], rows, empty="identical in every split"))
    comparison = compare_histories(a.histories, b.histories, 0.0)
    tables.append(comparison_table(comparison, ("A", "B")))
    lines.append(_curves_line(comparison))
    differ += [] if comparison.identical else ["metrics"]
    lines.append(f"differ: {', '.join(differ)}" if differ else "same: config, data, code, numeric packages, hardware and every metric")

    print("\n".join(lines[:2]))
    for table in [*tables[:-1], comparison_table(comparison, ("A", "B"), brief=True)]:
        print(table.text())
    print("\n".join(lines[-2:]))
    if args.html:
        figure = figure_png(curves_figure(a.histories, b.histories, ("A", "B")))
        Path(args.html).write_text(html_page(f"trainlab diff {a.run_id[:8]} vs {b.run_id[:8]}", lines, tables, [figure]))
        print(f"wrote {args.html}")
    return 1 if differ else 0


def _curves_line(comparison) -> str:
    from trainlab.reproduce.compare import metric_order

    divergence = comparison.first_divergence()
    if divergence is None:
        return "curves: " + ("identical" if comparison.identical else "no per-epoch curve diverges") + " on every common epoch"
    curves = [m for m in comparison.metrics if not m.is_final and m.largest_gap_step is not None]
    widest = max(curves, key=lambda m: (metric_order(m.name)[0] == 0, m.largest_gap))  # the task's own curves first
    return (
        f"curves: diverge from epoch {divergence[0]} ({', '.join(divergence[1][:4])}{', ...' if len(divergence[1]) > 4 else ''}); "
        f"largest gap {widest.largest_gap:.4g} in {widest.name} at epoch {widest.largest_gap_step}"
    )


def _show(value) -> str:
    return "-" if value is None else str(value)
