"""`trainlab ui` in a real browser, clicked through as a user does: after a small study, the MLflow UI's
experiment list leads to the runs (after the one "Model training" choice MLflow 3.17 asks of a new
browser), the study's parent run with its trials nested under it and their outcomes in their names, the
parent's description linking the best trial's run, and a trial's metric chart; optuna-dashboard shows
the study with the metric's name and a note linking each trial's MLflow run. The terminal shows only
the addresses. Screenshots are kept under the test's tmp dir and copied to test-artifacts/."""

from __future__ import annotations

import contextlib
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading

import pytest
import yaml

from conftest import REPO, chromium_path, need

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _wait_for_urls(process: subprocess.Popen, printed: list[str], timeout_s: float = 240) -> dict[str, str]:
    """The two addresses `trainlab ui` prints; every line it prints (stdout and stderr) lands in ``printed``."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            printed.append(line)
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    urls: dict[str, str] = {}
    while len(urls) < 2:
        try:
            line = lines.get(timeout=timeout_s)
        except queue.Empty:
            pytest.fail(f"trainlab ui printed no URLs in {timeout_s} s")
        name, _, rest = line.partition(":")
        if name in ("MLflow UI", "optuna-dashboard"):
            urls[name] = rest.split()[0]
    return urls


@pytest.mark.browser
@pytest.mark.integration
def test_mlflow_ui_shows_the_study_with_nested_trials_and_a_metric_chart(workdir, cli, tracking_uri, mlflow_client, request):
    chromium = chromium_path()
    need(chromium is not None, "Debian chromium (/usr/bin/chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")

    document = {
        "seed_everything": 42,
        "model": {"class_path": "MLPClassifier", "init_args": {"hidden_sizes": [64]}},
        "data": {"class_path": "Digits"},
        "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.1}},
        "trainer": {"max_epochs": 2, "enable_progress_bar": False},
        "tracking": {"experiment": "ui-test"},
        "study": {"name": "browse", "metric": "val/acc", "direction": "maximize", "n_trials": 2, "sampler": "grid", "pruner": {"type": "threshold", "lower": 0.3}},
        "search_space": {"optimizer.init_args.lr": {"choices": [0.1, 1.0e-6]}},
    }
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    assert cli("study", path).code == 0
    experiment = mlflow_client.get_experiment_by_name("ui-test")
    runs = mlflow_client.search_runs([experiment.experiment_id])
    trial_runs = {r.data.tags["trainlab.trial"]: r for r in runs if r.data.tags.get("trainlab.kind") == "trial"}
    complete = next(r for r in trial_runs.values() if r.info.status == "FINISHED")
    pruned = next(r for r in trial_runs.values() if r.info.status == "KILLED")
    assert complete.info.run_name == f"[best] browse-trial-{complete.data.tags['trainlab.trial']}"
    assert pruned.info.run_name == f"[pruned] browse-trial-{pruned.data.tags['trainlab.trial']}"

    shots = workdir / "screenshots"
    shots.mkdir()
    ports = {"mlflow": _free_port(), "dashboard": _free_port()}
    ui = subprocess.Popen(
        [sys.executable, "-m", "trainlab", "ui", "--port", str(ports["mlflow"]), "--dashboard-port", str(ports["dashboard"])],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    printed: list[str] = []
    try:
        urls = _wait_for_urls(ui, printed)
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(90_000)

            # The experiment list, as printed; MLflow 3.17 asks a new browser once to pick "Model training".
            page.goto(f"{urls['MLflow UI']}/#/experiments")
            page.get_by_role("link", name="ui-test", exact=True).wait_for()
            page.get_by_text("Model training", exact=True).click()
            page.get_by_role("link", name="ui-test", exact=True).click()
            page.get_by_text("matching runs").wait_for()
            assert "workflowType=machine_learning" in page.url  # MLflow's own switch, not ours
            parent_row = page.locator(".ag-row", has_text="browse").first
            parent_row.locator('button[data-component-id*="runnamecellrenderer"]').click()  # expand nested runs
            for run in trial_runs.values():
                page.get_by_role("link", name=run.info.run_name, exact=True).wait_for()
            page.screenshot(path=shots / "runs_nested.png")

            # The parent run's description links the best trial's run; following it shows that run marked best.
            page.get_by_role("link", name="browse", exact=True).click()
            best_link = page.get_by_role("link", name=f"trial {complete.data.tags['trainlab.trial']}", exact=True)
            best_link.wait_for()
            assert best_link.get_attribute("href").endswith(f"/runs/{complete.info.run_id}")
            page.get_by_text("the earliest wins", exact=False).first.wait_for()
            page.screenshot(path=shots / "parent_run.png")
            page.goto(f"{urls['MLflow UI']}/#/experiments/{experiment.experiment_id}/runs/{complete.info.run_id}")
            page.get_by_text("Best trial of the study", exact=False).first.wait_for()
            page.get_by_role("link", name="parent run", exact=True).wait_for()
            page.screenshot(path=shots / "best_trial_run.png")

            page.get_by_text("Model metrics", exact=True).click()
            page.get_by_placeholder("Search metric charts").fill("val/acc")
            page.get_by_text(f"{complete.info.run_name} (val/acc)").wait_for()
            curve = page.locator(".js-line").first  # plotly draws the per-epoch curve once its data arrived
            curve.wait_for()
            curve.scroll_into_view_if_needed()
            page.screenshot(path=shots / "trial_metric_chart.png")

            # optuna-dashboard: the study's objective carries the metric's name; a trial's note links its MLflow run.
            page.goto(f"{urls['optuna-dashboard']}/dashboard")
            page.get_by_text("browse").first.click()
            page.get_by_text("val/acc").first.wait_for()
            page.screenshot(path=shots / "optuna_dashboard.png")
            page.goto(page.url.rstrip("/") + "/trials")
            page.get_by_text(f"Trial {complete.data.tags['trainlab.trial']}", exact=False).first.click()
            note_link = page.get_by_role("link", name=complete.info.run_id, exact=True)
            note_link.wait_for()
            assert note_link.get_attribute("href").endswith(f"#/experiments/{experiment.experiment_id}/runs/{complete.info.run_id}")
            page.screenshot(path=shots / "optuna_dashboard_trial.png")
            browser.close()
    finally:
        if ui.poll() is None:
            ui.send_signal(signal.SIGINT)  # Ctrl-C
        code = ui.wait(timeout=60)
        artifacts = REPO / "test-artifacts"
        artifacts.mkdir(exist_ok=True)
        for shot in shots.glob("*.png"):
            shutil.copy(shot, artifacts / f"{request.node.name}-{shot.name}")
    assert code == 0
    assert not _port_open(ports["mlflow"]) and not _port_open(ports["dashboard"]), "Ctrl-C stops both servers"
    assert {shot.name for shot in shots.glob("*.png")} == {
        "runs_nested.png", "parent_run.png", "best_trial_run.png", "trial_metric_chart.png", "optuna_dashboard.png", "optuna_dashboard_trial.png",
    }
    # The terminal shows the addresses and how to stop, none of the servers' request logs or warnings.
    noise = [line for line in printed if re.search(r'"(GET|POST) /|Warning|INFO|WARNING', line)]
    assert not noise, noise[:5]
    assert [line.split(":")[0] for line in printed if line.strip()][:2] == ["MLflow UI", "optuna-dashboard"]


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["--port", "0"], "--port: got 0; expected a TCP port between 1 and 65535"),
        (["--port", "5000", "--dashboard-port", "5000"], "--dashboard-port: got 5000; expected a port other than --port"),
    ],
)
def test_bad_ports_are_refused_before_any_server_starts(workdir, cli, arguments, expected):
    result = cli("ui", *arguments)
    assert result.code == 2 and result.err.strip() == f"trainlab: error: {expected}"
