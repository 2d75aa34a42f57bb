"""Write a tracked run's recorded config as a file LightningCLI accepts, for the same module and data.

trainlab's own sections (tracking, diagnostics, monitor, test) are left out; a monitored metric becomes the
ModelCheckpoint LightningCLI needs to keep the same checkpoint.
  trainlab export 4f1c0e... -o run.yaml
  python my_cli.py fit --config run.yaml
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from trainlab.cli import add_tracking_uri

    parser.add_argument("run_id", metavar="RUN_ID", help="the MLflow run id (or study:NAME for a study's best trial)")
    parser.add_argument("-o", "--output", metavar="FILE", default=None, help="write here (default: print it)")
    add_tracking_uri(parser)


def run(args: argparse.Namespace) -> int:
    import tempfile
    from pathlib import Path

    import yaml

    from trainlab.class_paths import find_class
    from trainlab.config.lightning_cli import to_lightning_cli
    from trainlab.contract import monitored_metric
    from trainlab.errors import ConfigError
    from trainlab.reproduce.recorded import load_recorded, open_store
    from trainlab.reproduce.study_runs import resolve_run_reference
    from trainlab.tracking.store import resolve_tracking_uri

    if args.output and not Path(args.output).resolve().parent.is_dir():
        raise ConfigError("--output", args.output, "a file path in an existing directory")
    client = open_store(resolve_tracking_uri(args.tracking_uri))
    with tempfile.TemporaryDirectory(prefix="trainlab-export-") as workdir:
        recorded = load_recorded(client, resolve_run_reference(client, args.run_id), required=("config.yaml",), workdir=workdir)
    from trainlab.reproduce.rerun import effective_config

    document = effective_config(recorded)  # with the max_epochs a resume raised it to
    monitor = monitored_metric(find_class(document["model"]["class_path"]), document)
    text = f"# exported by trainlab from run {recorded.run_id}; LightningCLI config (e.g. python cli.py fit --config FILE)\n"
    text += yaml.safe_dump(to_lightning_cli(document, monitor), sort_keys=False)
    if args.output:
        Path(args.output).write_text(text)
        print(f"wrote {args.output}: the config of run {recorded.run_id} for LightningCLI")
    else:
        print(text, end="")
    return 0
