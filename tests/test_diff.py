"""`trainlab diff`: why two runs differ — config keys, environment, data, and where the curves part."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

pytestmark = pytest.mark.integration


def _train(cli, path, *overrides) -> str:
    result = cli("train", path, "trainer.max_epochs=2", *overrides)
    assert result.code == 0, result
    return re.search(r"run ([0-9a-f]{32}) FINISHED", result.out).group(1)


class _ExternalReferences(HTMLParser):
    """Collects every src/href that would make the browser fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.external: list[str] = []
        self.images = 0

    def handle_starttag(self, tag, attrs):
        self.images += tag == "img"
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith(("data:", "#")):
                self.external.append(value)


def test_runs_differing_in_learning_rate(cli, workdir, fast_digits):
    a = _train(cli, fast_digits)
    b = _train(cli, fast_digits, "optimizer.init_args.lr=0.02")

    result = cli("diff", a, b, "--html", "diff.html")
    assert result.code == 1, result  # issue 19: runs that differ exit 1, as diff(1) does
    config_rows = result.out.split("config keys that differ:")[1].split("\n\n")[0].split("environment")[0]
    changed = [line.split()[0] for line in config_rows.strip().splitlines()[1:]]
    assert changed == ["optimizer.init_args.lr"]
    assert "0.002" in config_rows and "0.02" in config_rows
    assert "data fingerprints: identical in every split" in result.out
    # Both runs start from the same seed, so the first epoch already differs.
    assert re.search(r"curves: diverge from epoch 0 \(.*train/loss", result.out), result.out
    val_loss = next(line for line in result.out.splitlines() if line.strip().startswith("val/loss"))
    assert "DIFFERS" in val_loss

    page = (workdir / "diff.html").read_text()
    assert "optimizer.init_args.lr" in page and "diverge from epoch 0" in page
    references = _ExternalReferences()
    references.feed(page)
    assert references.external == [] and references.images == 1

    itself = cli("diff", a, a)
    assert itself.code == 0, itself
    assert "config keys that differ: identical" in itself.out
    assert "environment and code: identical" in itself.out
    assert "curves: identical on every common epoch" in itself.out


def test_diff_with_an_unknown_run_gives_exit_2(cli, tracking_uri):
    from trainlab.tracking.run_record import RunRecord

    known = RunRecord.create(tracking_uri, experiment="digits-mlp", run_name="some-run", tags={})
    known.end("FINISHED")
    result = cli("diff", known.run_id, "ffffffffffffffffffffffffffffffff")
    assert result.code == 2 and "ffffffffffffffffffffffffffffffff" in result.err and result.err.count("\n") == 1
