"""Study workers as a SLURM job array on a real one-node cluster (.ci/slurm-up.sh starts it).

Skipped with the reason where SLURM cannot be started (not root, no apt); failed in CI (CI=true).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, STUDIES, all_runs, need

pytestmark = [pytest.mark.slurm, pytest.mark.integration]

TRAINLAB = [sys.executable, "-m", "trainlab"]


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """The one-node cluster, started once (a no-op when `srun hostname` already answers)."""
    try:
        done = subprocess.run([str(REPO / ".ci" / "slurm-up.sh")], capture_output=True, text=True, timeout=600)
        reason = (done.stderr or done.stdout).strip().splitlines()[-1:] if done.returncode else []
    except (OSError, subprocess.TimeoutExpired) as exc:
        done, reason = None, [str(exc)]
    need(done is not None and done.returncode == 0, f"no SLURM cluster: .ci/slurm-up.sh: {' '.join(reason)}")


def study_file(workdir: Path, *, trials: int, epochs: int, name: str) -> Path:
    """The demo study, small: a few unpruned trials of a few epochs each."""
    document = yaml.safe_load((STUDIES / "digits_mlp.yaml").read_text())
    document["trainer"]["max_epochs"] = epochs
    document["study"].update(n_trials=trials, pruner={"type": "none"}, name=name)
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def trial_runs(tracking_uri: str):
    runs = all_runs(tracking_uri)
    return [r for r in runs if "mlflow.parentRunId" in r.data.tags], [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def wait_for_epochs(client, epochs: int, runs: int = 1, timeout_s: float = 120) -> None:
    """Until ``runs`` RUNNING trial runs of the store have logged ``epochs`` epochs of val/acc each."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        experiments = [e.experiment_id for e in client.search_experiments()]
        running = [r for r in client.search_runs(experiments) if "mlflow.parentRunId" in r.data.tags and r.info.status == "RUNNING"] if experiments else []
        if sum(len(client.get_metric_history(r.info.run_id, "val/acc")) >= epochs for r in running) >= runs:
            return
        time.sleep(0.5)
    raise AssertionError(f"{runs} trial run(s) did not reach {epochs} epochs in {timeout_s} s")


def accounting_enforced() -> bool:
    """Whether the cluster refuses unknown accounts and QOS (slurm-up.sh's slurmdbd, when MariaDB runs)."""
    config = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    enforce = re.search(r"^AccountingStorageEnforce\s*=\s*(\S*)", config, re.MULTILINE)
    return enforce is not None and {"associations", "qos"} <= set(enforce.group(1).split(","))


def queued(job_name: str) -> list[str]:
    return subprocess.run(["squeue", "-h", "-n", job_name, "-o", "%i"], capture_output=True, text=True).stdout.split()


def test_array_of_two_workers_finishes_a_study_then_refits_as_a_job(slurm_cluster, cli, workdir, tracking_uri, mlflow_client):
    path = study_file(workdir, trials=4, epochs=2, name="slurm-array")
    result = cli("study", path, "--launcher", "slurm", "--jobs", "2", "--wait", "--refit-best")

    assert result.code == 0, result
    job_id = re.search(r"submitted job array (\d+) \(2 task\(s\)", result.out).group(1)
    assert f"squeue -j {job_id}" in result.out
    assert re.search(rf"slurm {job_id}: 4/4 trials done, 0 running, 0 failed; best val/acc=\d\.\d+; tasks 0 running, 0 pending", result.out), result.out
    assert "study slurm-array: 4 complete, 0 pruned, 0 failed" in result.out
    assert "must be on a filesystem every node sees" in result.err  # journal and sqlite: one warning line
    runs, parents = trial_runs(tracking_uri)
    trials = [r for r in runs if r.data.tags.get("trainlab.kind") != "refit"]
    assert sorted(r.data.tags["trainlab.trial"] for r in trials) == ["0", "1", "2", "3"]
    assert {r.info.status for r in trials} == {"FINISHED"}
    assert [p.info.status for p in parents] == ["FINISHED"]
    # Both tasks' output is where the command said: each task ran the study worker.
    for task in (0, 1):
        assert (workdir / "slurm_logs" / f"{job_id}_{task}" / f"{job_id}_{task}_0_log.out").is_file()
    # The refit is one more SLURM job (launch's slurm path, as `train --launcher slurm`), logged under the study.
    refit_job = re.search(r"slurm: submitted job (\d+) \(1 node\(s\) x 1 task\(s\), one per device\)", result.out).group(1)
    refit_id = re.search(r"refit: run (\w+) FINISHED", result.out).group(1)
    refit = next(r for r in runs if r.info.run_id == refit_id)
    assert refit.data.tags["trainlab.kind"] == "refit" and refit.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert f"refit model: runs:/{refit_id}/model" in result.out
    assert "trainlab.model_format" in refit.data.tags  # the model was logged where it trained: in the job
    assert "refit" in (workdir / "slurm_logs" / refit_job / f"{refit_job}_0_log.err").read_text()  # its epoch lines


def test_a_cancelled_task_loses_its_trial_and_the_other_completes_the_study(slurm_cluster, workdir, tracking_uri, mlflow_client):
    path = study_file(workdir, trials=4, epochs=60, name="slurm-cancel")
    command = [*TRAINLAB, "study", str(path), "--launcher", "slurm", "--jobs", "2", "--wait"]
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO / "tests")})
    lines, job_id, cancelled = [], None, False
    for line in process.stdout:
        lines.append(line)
        found = re.search(r"submitted job array (\d+)", line)
        job_id = found.group(1) if found else job_id
        if not cancelled and job_id and re.search(r"trials done, 2 running", line):
            wait_for_epochs(mlflow_client, 3, runs=2)  # both tasks mid-trial
            subprocess.run(["scancel", f"{job_id}_0"], check=True)  # one task gone mid-trial
            cancelled = True
    code = process.wait(timeout=600)
    out, err = "".join(lines), process.stderr.read()

    assert cancelled, out
    assert code == 0, out + err
    assert "1 array task(s) stopped early (scancel, time limit, node lost)" in err, err
    summary = re.search(r"study slurm-cancel: (\d+) complete, 0 pruned, (\d+) failed", out)
    assert summary and summary.group(1) == "4" and int(summary.group(2)) >= 1, out
    trials, parents = trial_runs(tracking_uri)
    statuses = sorted(r.info.status for r in trials)
    assert statuses.count("FINISHED") == 4 and "RUNNING" not in statuses, statuses
    assert "KILLED" in statuses  # the cancelled task's trial, ended (by its SIGTERM or by the reaper)
    assert [p.info.status for p in parents] == ["FINISHED"]


def test_a_signalled_task_is_requeued_and_its_trial_resumes_in_the_same_run(slurm_cluster, workdir, tracking_uri, mlflow_client):
    """SIGUSR2 is what SLURM sends signal_delay_s before the time limit (--signal) and on preemption; sent
    here by scancel at a chosen epoch (the time-limit test below waits for SLURM's own)."""
    epochs = 300
    path = study_file(workdir, trials=1, epochs=epochs, name="slurm-requeue")
    command = [*TRAINLAB, "study", str(path), "--launcher", "slurm", "--jobs", "1", "--wait"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), "TRAINLAB_CHECKPOINT_EVERY_S": "0"}  # a checkpoint every epoch
    process = subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines, job_id, signalled = [], None, False
    for line in process.stdout:
        lines.append(line)
        found = re.search(r"submitted job (\d+)", line)
        job_id = found.group(1) if found else job_id
        if not signalled and job_id and re.search(r"0/1 trials done, 1 running", line):
            wait_for_epochs(mlflow_client, 10)  # some epochs into the trial, so that its run has a checkpoint
            subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
            signalled = True
    code = process.wait(timeout=600)
    out, err = "".join(lines), process.stderr.read()

    assert signalled and code == 0, out + err
    assert "study slurm-requeue: 1 complete, 0 pruned, 0 failed" in out
    script = (workdir / "slurm_logs" / job_id / f"{job_id}_submission.sh").read_text()
    assert "#SBATCH --signal=USR2@120" in script  # every task is warned before its time limit
    task_log = (workdir / "slurm_logs" / job_id / f"{job_id}_0_log.err").read_text()
    assert f"trainlab: SLURM task {job_id} requeued before its time limit; trial 0 continues from its checkpoint" in task_log
    assert "trainlab: resuming trial 0 (run " in task_log
    trials, parents = trial_runs(tracking_uri)
    assert len(trials) == 1 and trials[0].info.status == "FINISHED"  # one run, continued
    assert trials[0].data.tags["trainlab.resumed"].startswith("1 times, last from epoch ")
    steps = [m.step for m in mlflow_client.get_metric_history(trials[0].info.run_id, "val/acc")]
    assert sorted(steps) == list(range(epochs))  # every epoch once: none repeated, none skipped
    assert [p.info.status for p in parents] == ["FINISHED"]


def test_a_task_at_its_time_limit_is_signalled_by_slurm_requeued_and_resumes_its_trial(slurm_cluster, cli, workdir, tracking_uri, mlflow_client, monkeypatch):
    """No scancel here: SLURM itself sends SIGUSR2 signal_delay_s before the 2-minute limit (at its first
    30-s time-limit sweep from 30 s before that: 30-60 s into the task), the task requeues, and the trial
    goes on in its run (again, if the next task is signalled too). About 3 minutes.

    The trial trains for 60 s of wall time (Lightning's max_time, whose clock is in the checkpoint), not a
    number of epochs: longer than the first task's window on any machine."""
    path = study_file(workdir, trials=1, epochs=100_000, name="slurm-time-limit")
    monkeypatch.setenv("TRAINLAB_CHECKPOINT_EVERY_S", "0")  # a checkpoint every epoch (the job inherits it)
    result = cli("study", path, "--launcher", "slurm", "--jobs", "1", "--wait", "trainer.max_time=00:00:01:00",
                 "launcher.slurm.time=2", "launcher.slurm.signal_delay_s=60")

    assert result.code == 0, result
    assert "study slurm-time-limit: 1 complete, 0 pruned, 0 failed" in result.out
    job_id = re.search(r"submitted job (\d+)", result.out).group(1)
    script = (workdir / "slurm_logs" / job_id / f"{job_id}_submission.sh").read_text()
    assert "#SBATCH --time=2" in script and "#SBATCH --signal=USR2@60" in script
    task_log = (workdir / "slurm_logs" / job_id / f"{job_id}_0_log.err").read_text()
    assert f"trainlab: SLURM task {job_id} requeued before its time limit; trial 0 continues from its checkpoint" in task_log, task_log[-3000:]
    assert "trainlab: resuming trial 0 (run " in task_log
    trials, parents = trial_runs(tracking_uri)
    assert len(trials) == 1 and trials[0].info.status == "FINISHED"  # one run, continued after each requeue
    assert trials[0].data.tags["trainlab.resumed"].split()[0] == str(task_log.count("trainlab: resuming trial 0"))
    steps = sorted(m.step for m in mlflow_client.get_metric_history(trials[0].info.run_id, "val/acc"))
    assert len(steps) > 10 and steps == list(range(len(steps)))  # every epoch once: none repeated, none skipped
    assert [p.info.status for p in parents] == ["FINISHED"]


def test_a_two_task_ddp_train_through_srun_is_one_run_with_rank_0s_curves(slurm_cluster, cli, workdir, fast_digits, tracking_uri, mlflow_client):
    result = cli("train", fast_digits, "--launcher", "slurm", "trainer.devices=2", "trainer.strategy=ddp",
                 "trainer.accelerator=cpu", "trainer.max_epochs=2")

    assert result.code == 0, result
    job_id = re.search(r"slurm: submitted job (\d+) \(1 node\(s\) x 2 task\(s\), one per device\)", result.out).group(1)
    run_id = re.search(r"run (\w+) FINISHED", result.out).group(1)
    runs = all_runs(tracking_uri)
    assert [r.info.run_id for r in runs] == [run_id]  # rank 1 made no run
    assert [m.step for m in mlflow_client.get_metric_history(run_id, "val/acc")] == [0, 1]
    rank0_log = (workdir / "slurm_logs" / job_id / f"{job_id}_0_log.err").read_text()
    assert "Starting with 2 processes" in rank0_log  # Lightning's SLURM environment: one world of the job's tasks


def test_reproduce_on_slurm_is_one_job_and_matches(slurm_cluster, cli, workdir, fast_digits, tracking_uri, mlflow_client):
    trained = cli("train", fast_digits)
    assert trained.code == 0, trained
    original = re.search(r"run (\w+) FINISHED", trained.out).group(1)

    refused = cli("reproduce", original, "--launcher", "slurm", "launcher.slurm.partition=no-such-partition")
    assert refused.code == 2 and refused.err.strip().startswith(
        "trainlab: error: launcher.slurm.partition: got 'no-such-partition'; expected a value sbatch accepts (sbatch: invalid partition specified"), refused
    assert len(all_runs(tracking_uri)) == 1 and not (workdir / "slurm_logs").exists()  # nothing submitted or recorded

    result = cli("reproduce", original, "--launcher", "slurm")
    assert result.code == 0, result
    assert re.search(r"slurm: submitted job \d+ \(1 node\(s\) x 1 task\(s\), one per device\)", result.out), result.out
    assert "MATCH: all" in result.out, result.out
    rerun = next(r for r in all_runs(tracking_uri) if r.info.run_id != original)
    assert rerun.data.tags["trainlab.reproduces"] == original and rerun.data.tags["trainlab.reproduction.verdict"] == "match"
    history = lambda run_id: sorted((m.step, m.value) for m in mlflow_client.get_metric_history(run_id, "val/loss"))  # noqa: E731
    assert history(rerun.info.run_id) == history(original)  # trained with the recorded torch threads: bit-identical


@pytest.mark.parametrize(
    "overrides, env_path, expected",
    [
        (["launcher.slurm.partition=no-such-partition"], None,
         "trainlab: error: launcher.slurm.partition: got 'no-such-partition'; expected a value sbatch accepts (sbatch: invalid partition specified"),
        (["launcher.slurm.parition=debug"], None, "trainlab: error: launcher.slurm.parition: expected a key among account, cpus_per_task"),
        (["launcher.slurm.time=soon"], None, "trainlab: error: launcher.slurm.time: got 'soon'; expected minutes"),
        (["launcher.slurm.sbatch={constraint: no-such-feature}"], None,
         "trainlab: error: launcher.slurm.sbatch.constraint: got 'no-such-feature'; expected a value sbatch accepts (sbatch: "),
        # .ci/slurm-up.sh enforces accounting (slurmdbd): account trainlab, QOS normal; other names are refused.
        (["launcher.slurm.account=no-such-account"], None,
         "trainlab: error: launcher.slurm.account: got 'no-such-account'; expected a value sbatch accepts (sbatch: allocation failure: Invalid account"),
        (["launcher.slurm.account=trainlab", "launcher.slurm.qos=no-such-qos"], None,
         "trainlab: error: launcher.slurm.qos: got 'no-such-qos'; expected a value sbatch accepts (sbatch: allocation failure: Invalid qos specification)"),
        ([], "no-sbatch", "trainlab: error: --launcher: got 'slurm'; expected sbatch on PATH"),
    ],
    ids=["unknown-partition", "misspelt-key", "bad-time", "unknown-feature", "unknown-account", "unknown-qos", "no-sbatch"],
)
def test_bad_slurm_input_is_one_line_exit_2_nothing_submitted_or_recorded(slurm_cluster, cli, workdir, monkeypatch, overrides, env_path, expected):
    if any(o.startswith(("launcher.slurm.account=", "launcher.slurm.qos=")) for o in overrides):
        need(accounting_enforced(), "the SLURM cluster does not enforce accounting (no MariaDB for slurmdbd): it accepts any account or QOS")
    path = study_file(workdir, trials=2, epochs=1, name="slurm-bad")
    if env_path:
        monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # the venv's tools, no SLURM
    result = cli("study", path, "--launcher", "slurm", "--jobs", "2", *overrides)

    assert result.code == 2, result
    assert result.err.strip().startswith(expected) and len(result.err.strip().splitlines()) == 1, result.err
    assert not (workdir / "mlflow.db").exists() and not (workdir / "optuna_journal.log").exists()
    assert not (workdir / "slurm_logs").exists()
    monkeypatch.undo()
    time.sleep(0.5)
    assert queued("trainlab-slurm-bad") == []


def test_wait_needs_the_slurm_launcher(cli, workdir):
    path = study_file(workdir, trials=2, epochs=1, name="slurm-local")
    result = cli("study", path, "--wait")
    assert result.code == 2
    assert result.err.strip() == "trainlab: error: --wait: expected --launcher slurm as well (a local study always waits for its workers)"
    assert not (workdir / "mlflow.db").exists()


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["trainer.devices=auto"], "trainlab: error: trainer.devices: got 'auto'; expected a number of devices per node (an integer) with --launcher slurm"),
        (["trainer.devices=2", "launcher.slurm.partition=no-such-partition"],
         "trainlab: error: launcher.slurm.partition: got 'no-such-partition'; expected a value sbatch accepts (sbatch: invalid partition specified"),
    ],
    ids=["devices-auto", "unknown-partition"],
)
def test_bad_slurm_train_input_is_one_line_exit_2_nothing_recorded(slurm_cluster, cli, workdir, fast_digits, overrides, expected):
    result = cli("train", fast_digits, "--launcher", "slurm", *overrides)

    assert result.code == 2, result
    assert result.err.strip().startswith(expected) and len(result.err.strip().splitlines()) == 1, result.err
    assert not (workdir / "mlflow.db").exists() and not (workdir / "slurm_logs").exists()


@pytest.mark.parametrize(
    "arguments, no_sbatch, expected",
    [
        (["--launcher", "slurm"], True, "trainlab: error: --launcher: got 'slurm'; expected sbatch on PATH"),
        (["--launcher", "slurm", "trainer.max_epochs=1"], False,
         "trainlab: error: trainer.max_epochs=1: expected launcher.slurm.KEY=VALUE with --launcher slurm"),
        (["launcher.slurm.partition=debug"], False, "trainlab: error: launcher.slurm.partition=debug: expected --launcher slurm as well"),
    ],
    ids=["no-sbatch", "not-a-launcher-key", "no-launcher"],
)
def test_bad_slurm_reproduce_input_is_one_line_exit_2_nothing_recorded(cli, workdir, monkeypatch, arguments, no_sbatch, expected):
    if no_sbatch:
        monkeypatch.setenv("PATH", str(Path(sys.executable).parent))  # the venv's tools, no SLURM
    result = cli("reproduce", "0123456789abcdef0123456789abcdef", *arguments)

    assert result.code == 2, result
    assert result.err.strip().startswith(expected) and len(result.err.strip().splitlines()) == 1, result.err
    assert not (workdir / "mlflow.db").exists() and not (workdir / "slurm_logs").exists()
