"""Reports as plain-text tables for the terminal and one self-contained HTML page (no external resources)."""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from dataclasses import dataclass, field

from trainlab.reproduce.audit import Audit
from trainlab.reproduce.compare import Comparison, History


HEADLINE_PREFIXES = ("train/", "val/", "test/")
BRIEF_EXTRA = 8


@dataclass
class Table:
    """A titled table: ``Table("audit", ["aspect", "recorded", "now"], rows).text()``."""

    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    empty: str = "none"
    footer: str | None = None  # a line under the rows, e.g. what was left out

    def text(self) -> str:
        if not self.rows:
            return f"{self.title}: {self.empty}"
        widths = [max(len(str(row[i])) for row in [self.header, *self.rows]) for i in range(len(self.header))]
        lines = [f"{self.title}:"]
        for row in [self.header, *self.rows]:
            lines.append("  " + "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip())
        if self.footer:
            lines.append(f"  {self.footer}")
        return "\n".join(lines)

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(self.header)
        writer.writerows(self.rows)
        return out.getvalue()

    def html(self) -> str:
        if not self.rows:
            return f"<h2>{html.escape(self.title)}</h2><p>{html.escape(self.empty)}</p>"
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in self.rows)
        footer = f"<p>{html.escape(self.footer)}</p>" if self.footer else ""
        return f"<h2>{html.escape(self.title)}</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{footer}"


def audit_table(result: Audit, title: str = "audit: recorded vs now", columns: tuple[str, str] = ("recorded", "now")) -> Table:
    rows = [[d.aspect, d.recorded, d.now, d.effect] for d in result.differences]
    return Table(title, ["aspect", *columns, "effect"], rows, empty="no differences in config, data, code, packages, hardware, world size or determinism")


def comparison_table(comparison: Comparison, names: tuple[str, str] = ("original", "re-run"), brief: bool = False) -> Table:
    """One row per metric. ``brief`` (the terminal): the task's headline metrics, plus up to
    :data:`BRIEF_EXTRA` others that do not match; the rest is counted in the footer."""
    shown = comparison.metrics
    footer = None
    if brief:
        headline = [m for m in comparison.metrics if is_headline(m.name)]
        others = [m for m in comparison.metrics if not is_headline(m.name)]
        failing = [m for m in others if not m.matches]
        extra = failing if len(failing) <= BRIEF_EXTRA else []
        shown = [m for m in comparison.metrics if m in headline or m in extra]
        hidden = [m for m in others if m not in extra]
        if hidden:
            beyond = sum(1 for m in hidden if not m.matches)
            state = f"{beyond} {'differ' if comparison.tolerance == 0 else 'beyond tolerance'}" if beyond else ("all within tolerance" if any(m.largest_gap for m in hidden) else "all identical")
            footer = f"... and {len(hidden)} more metrics (per class, optimizer, diagnostics): {state}"
    rows = []
    for m in shown:
        if m.only_in:
            status = f"only in {names[0] if m.only_in == 'a' else names[1]}"
        elif m.missing_in_b:
            status = f"{names[1]} lacks epoch {m.missing_in_b[0]}"
        elif m.first_divergence is not None:
            status = "DIFFERS"
        else:
            status = "identical" if m.largest_gap == 0 else "within tolerance"
            if m.extra_in_b:
                status += f" (+{m.extra_in_b} epoch{'s' if m.extra_in_b > 1 else ''} in {names[1]})"
        rows.append(
            [
                m.name,
                str(m.compared),
                "-" if m.first_divergence is None else ("final" if m.is_final else str(m.first_divergence)),
                _gap(m.largest_gap, m.largest_gap_step, m.is_final),
                number(m.final_a),
                number(m.final_b),
                status,
            ]
        )
    header = ["metric", "epochs", "diverges at epoch", "largest gap @ epoch", f"final {names[0]}", f"final {names[1]}", "status"]
    return Table(f"metrics: {names[0]} vs {names[1]} (tolerance {comparison.tolerance:g})", header, rows, empty="no metrics recorded", footer=footer)


def is_headline(name: str) -> bool:
    """``val/loss``, ``test/acc``, a user's ``val_acc``: the model's own metrics, not per-class
    (``test/recall/3``), optimiser or diagnostic ones."""
    if "/" not in name:  # a user's own names (val_acc, train_loss); overfit_epoch is a diagnostic's mark
        return name != "overfit_epoch"
    return name.startswith(HEADLINE_PREFIXES) and name.count("/") == 1


def number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if math.isfinite(value) else str(value)


def _gap(gap: float, step: int | None, is_final: bool) -> str:
    if gap == 0:
        return "0"
    return f"{gap:.3g}" + ("" if is_final or step is None else f" @ {step}")


def curves_figure(a: History, b: History, names: tuple[str, str], limit: int = 6):
    """Overlay of the per-epoch curves both runs have (at most ``limit`` panels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    from trainlab.reproduce.compare import metric_order

    shown = [n for n in sorted(set(a) & set(b), key=metric_order) if len(a[n]) > 1 and not n.startswith("optim/")][:limit]
    columns = min(3, max(len(shown), 1))
    rows = max(1, math.ceil(len(shown) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.2 * rows), squeeze=False)
    for ax, name in zip(axes.flat, shown):
        for history, label, style in ((a, names[0], "-o"), (b, names[1], "--s")):
            steps, values = zip(*history[name])
            ax.plot(steps, values, style, markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=90)
    plt.close(fig)
    return out.getvalue()


def html_page(title: str, lines: list[str], tables: list[Table], images: list[bytes] = ()) -> str:
    """One HTML file with its styles and images inline (PNG as data: URIs), so it can be mailed or attached."""
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse;margin-bottom:1.5em;font-size:14px}"
        "th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;font-family:monospace}"
        "th{background:#f0f0f0}h2{font-size:17px;margin-top:1.5em}p.line{margin:.2em 0}"
    )
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>"]
    parts.append(f"<h1>{html.escape(title)}</h1>")
    parts += [f"<p class='line'>{html.escape(line)}</p>" for line in lines]
    parts += [table.html() for table in tables]
    for image in images:
        parts.append(f"<img alt='curves' src='data:image/png;base64,{base64.b64encode(image).decode()}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
