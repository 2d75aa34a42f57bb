"""What `pip install` puts on a user's path: trainlab alone, never top-level `models`/`datamodules`."""

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE_ROOTS = {"platform/trainlab": "trainlab", "models": "trainlab.models", "datamodules": "trainlab.datamodules"}


def _packages_on_disk() -> set[str]:
    names = set()
    for folder, name in SOURCE_ROOTS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder)
            names.add(".".join([name, *relative.parts]))
    return names


def test_every_package_folder_is_installed_under_trainlab():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(config["packages"]) == _packages_on_disk()
    assert all(name == "trainlab" or name.startswith("trainlab.") for name in config["packages"])


def test_installed_zoo_lives_under_trainlab(tmp_path):
    """From a folder that is not the repo, the zoo imports as trainlab.models and `models` is free."""
    import subprocess

    code = (
        "import importlib.util, trainlab.models, trainlab.datamodules;"
        "print(importlib.util.find_spec('models') is None, importlib.util.find_spec('datamodules') is None,"
        " trainlab.models.MLPClassifier.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True, env={"PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["True", "True", "trainlab.models.mlp"]
