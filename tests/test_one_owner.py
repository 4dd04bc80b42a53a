"""One owner per fact: one finding type, one steps calculation, one NVML probe, no import circles."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lora_tui"


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _imports(path: Path) -> set[str]:
    """Every lora_tui module a file imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lora_tui"):
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name.startswith("lora_tui"))
    return out


def test_check_and_doctor_share_one_finding_type() -> None:
    from lora_tui.core import findings, lint
    from lora_tui.train.diagnostics import doctor, project

    assert lint.Finding is doctor.Finding is project.Finding is findings.Finding
    assert {lint.ERROR, lint.WARNING} == {doctor.ERROR, doctor.WARN}


def test_the_doctor_modules_do_not_import_each_other_in_a_circle() -> None:
    folder = PACKAGE / "train" / "diagnostics"
    modules = {_module_name(p): p for p in folder.glob("*.py") if p.stem != "__init__"}
    graph = {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}
    for name, deps in graph.items():
        for dep in deps:
            assert name not in graph[dep], f"{name} and {dep} import each other"


def test_the_nvml_probe_lives_in_core_and_the_supervisor_uses_it() -> None:
    from lora_tui.core import gpu
    from lora_tui.runs import gpu as runs_gpu
    from lora_tui.train.diagnostics import doctor

    assert runs_gpu.GpuSampler is gpu.GpuSampler and runs_gpu.probe_nvml is gpu.probe_nvml
    assert "lora_tui.core.gpu" in _imports(PACKAGE / "train" / "diagnostics" / "doctor.py")
    assert not hasattr(doctor, "nvmlInit") and "import pynvml" not in (
        PACKAGE / "train" / "diagnostics" / "doctor.py").read_text("utf-8")


def test_only_core_steps_turns_epochs_into_steps() -> None:
    """The batches → steps arithmetic (max_train_epochs × ceil(batches / processes / accumulation))."""
    owners = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult)
                    and "max_train_epochs" in ast.unparse(node)):
                owners.append(_module_name(path))
    assert set(owners) == {"lora_tui.core.steps"}
