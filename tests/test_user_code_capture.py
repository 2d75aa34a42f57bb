"""What the user-code capture records: the user's source files with their digests, never a library's, and a
class whose source cannot be read makes the run statistical instead of falsely exact."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import types

import lightning as L


def _module_from(path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_a_user_module_its_base_and_its_net_are_captured_and_libraries_are_not(tmp_path, monkeypatch):
    from trainlab.models import MLPClassifier
    from trainlab.tracking.user_code import capture_user_code

    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets.py").write_text("import torch\nclass Head(torch.nn.Linear):\n    pass\n")
    (tmp_path / "task.py").write_text(
        "import lightning as L\nfrom nets import Head\n"
        "class Base(L.LightningModule):\n    pass\n"
        "class Task(Base):\n    def __init__(self):\n        super().__init__()\n        self.head = Head(2, 1)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    task = _module_from(tmp_path / "task.py", "task")
    code = capture_user_code(task.Task(), L.LightningDataModule())
    digests = {entry["file"]: entry["sha256"] for entry in code.to_json()["files"]}
    assert digests == {name: hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() for name in ("nets.py", "task.py")}
    assert code.not_captured == [] and code.git is None  # tmp_path is in no git repository
    assert capture_user_code(MLPClassifier).files == {}  # trainlab's own zoo is library code


def test_a_class_without_source_is_not_captured_and_the_run_is_not_exact():
    from trainlab.tracking.environment import reproducibility
    from trainlab.tracking.user_code import capture_user_code

    notebook = types.ModuleType("notebook_cell")  # as a Jupyter cell or `python -c` defines classes: no file
    exec("import lightning as L\nclass Cell(L.LightningModule):\n    pass\n", notebook.__dict__)
    sys.modules["notebook_cell"] = notebook
    try:
        code = capture_user_code(notebook.Cell)
    finally:
        del sys.modules["notebook_cell"]
    assert code.files == {} and code.not_captured == ["notebook_cell.Cell (no source file)"]
    environment = {"seed": 1, "determinism": {"deterministic_algorithms": True, "seed_workers": True}, "user_code": code.to_json()}
    label, reasons = reproducibility(environment)
    assert label == "statistical" and reasons == ["user code not captured: notebook_cell.Cell (no source file)"]
