"""Multi-seed confirmation of a study's top trials: mean ± 95% t-interval per config, and whether the ranking holds.

A study picks its winner from one seed per config; the winner's value is biased upwards (it won partly
by luck). Re-running each top config over fresh seeds, and excluding the study's own run, says whether
the ranking survives a change of seed.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from trainlab.reproduce.report import Table, number


@dataclass
class ConfigConfirmation:
    """One top trial's config, re-run over several seeds."""

    study_rank: int  # 1 = the study's best
    trial: str  # the trial number (tag trainlab.trial)
    run_id: str  # the trial's run
    study_value: float
    seeds: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)  # one per finished seed
    run_ids: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    metric: str = ""  # the study metric: its range bounds the interval (an accuracy stays within [0, 1])

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def half_width(self) -> float:
        return t_half_width(self.values)

    @property
    def interval(self) -> tuple[float, float]:
        from trainlab.contract import metric_range

        low, high = metric_range(self.metric)
        return max(low, self.mean - self.half_width), min(high, self.mean + self.half_width)


def t_half_width(values: list[float], confidence: float = 0.95) -> float:
    """Half-width of the Student-t confidence interval of the mean (infinite with fewer than 2 values)."""
    from scipy import stats

    if len(values) < 2:
        return math.inf
    return float(stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)))


@dataclass
class RankingCheck:
    holds: bool  # the order by mean over seeds is the study's order
    best_trial: str  # best config by mean over seeds
    separated: bool | None  # the 95% intervals of the best and the runner-up do not overlap (None with one config)

    def lines(self, confirmations: list[ConfigConfirmation], seeds: int) -> list[str]:
        by_rank = sorted(confirmations, key=lambda c: c.study_rank)
        if self.holds:
            lines = [f"ranking holds: the top {len(by_rank)} keep the study's order over {seeds} seeds"]
        else:
            winner = next(c for c in by_rank if c.trial == self.best_trial)
            lines = [f"ranking does NOT hold: trial {winner.trial} (study rank {winner.study_rank}) is best over {seeds} seeds"]
        if self.separated is not None:
            state = "do not overlap: the best is separated from the runner-up" if self.separated else "overlap: the seeds do not separate the best from the runner-up"
            lines.append(f"95% intervals of the best and the runner-up {state}")
        return lines


def check_ranking(confirmations: list[ConfigConfirmation], direction: str) -> RankingCheck:
    usable = [c for c in confirmations if c.values]
    by_mean = sorted(usable, key=lambda c: c.mean, reverse=direction == "maximize")
    by_study = sorted(usable, key=lambda c: c.study_rank)
    holds = [c.trial for c in by_mean] == [c.trial for c in by_study] and len(usable) == len(confirmations)
    separated = None
    if len(by_mean) > 1:
        (low_a, high_a), (low_b, high_b) = by_mean[0].interval, by_mean[1].interval
        separated = high_a < low_b or high_b < low_a
    return RankingCheck(holds, by_mean[0].trial if by_mean else "-", separated)


def confirmation_table(confirmations: list[ConfigConfirmation], metric: str) -> Table:
    rows = []
    for c in sorted(confirmations, key=lambda c: c.study_rank):
        low, high = c.interval
        rows.append(
            [
                str(c.study_rank),
                c.trial,
                c.run_id,
                number(c.study_value),
                number(c.mean),
                f"{number(c.half_width)}",
                f"[{number(low)}, {number(high)}]",
                " ".join(f"{s}:{number(v)}" for s, v in zip(c.seeds, c.values)) + (f" ({len(c.failures)} failed)" if c.failures else ""),
            ]
        )
    header = ["study rank", "trial", "trial run", "study value", "mean over seeds", "± 95%", "95% interval", "seed:value"]
    return Table(f"best epoch {metric} over seeds (mean ± 95% t-interval)", header, rows)


def confirmation_figure(confirmations: list[ConfigConfirmation], metric: str, direction: str):
    """Per config: the seeds' values, their mean with the 95% interval, and the study's own value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ordered = sorted(confirmations, key=lambda c: c.study_rank)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 * len(ordered) + 2), 4))
    for x, c in enumerate(ordered):
        ax.scatter([x] * len(c.values), c.values, color="tab:gray", s=18, zorder=2, label="seeds" if x == 0 else None)
        if c.values:
            low, high = c.interval if math.isfinite(c.half_width) else (c.mean, c.mean)
            ax.errorbar([x], [c.mean], yerr=[[c.mean - low], [high - c.mean]], fmt="o", color="tab:blue", capsize=6, zorder=3, label="mean ± 95% CI" if x == 0 else None)
        ax.scatter([x], [c.study_value], marker="*", s=120, color="tab:orange", zorder=4, label="study value" if x == 0 else None)
    ax.set_xticks(range(len(ordered)), [f"trial {c.trial}\n(rank {c.study_rank})" for c in ordered])
    ax.set_xlim(-0.6, len(ordered) - 0.4)
    ax.set_ylabel(f"best epoch {metric}")
    ax.set_title(f"best epoch {metric} over seeds ({direction})")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
