"""The package's shape: imports point one way, reading results needs no torch, optional packages
load only on their paths, files stay small, and the repository root holds only what the brief asks."""
import ast
import subprocess
import sys
from pathlib import Path

import fusionstudy
from tests.conftest import ROOT

PKG = Path(fusionstudy.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return mods


def _graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, counting imports inside functions."""
    mods, graph = _modules(), {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom) and node.module in mods:
                deps.add(node.module)
                deps |= {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in mods}
        graph[name] = deps - {name}
    return graph


def test_the_walk_sees_every_layer():
    # so the checks below cannot pass vacuously after a move
    names = set(_modules())
    for layer in ("config", "data.prepare", "models.fusion", "training.loop", "study.runner", "records",
                  "analysis.verdicts", "report.experiments", "cli", "api"):
        assert f"fusionstudy.{layer}" in names
    assert len(names) > 35


def test_no_import_cycles_even_inside_functions():
    graph, seen, stack = _graph(), set(), []

    def visit(n):
        assert n not in stack, f"import cycle: {' -> '.join(stack[stack.index(n):] + [n])}"
        if n in seen:
            return
        stack.append(n)
        for d in graph[n]:
            visit(d)
        stack.pop()
        seen.add(n)
    for n in graph:
        visit(n)


LAYERS = ["locations", "registry", "extras", "sections", "config", "metrics", "data", "models", "training", "study", "records", "analysis",
          "report", "scoring", "bench", "api", "benchmark", "cli"]


# exceptions to the package order, each with its reason
PLACED = {
    "fusionstudy.records": LAYERS.index("data") - 0.5,  # torch-free records: the study writes them, analysis reads
    "fusionstudy.data.mmtk": LAYERS.index("config") - 0.5,  # a folder's column_info.json is a spec, read at load
    "fusionstudy.__main__": len(LAYERS),  # `python -m fusionstudy` is the command line
}


def _rank(mod: str) -> float:
    if mod in PLACED:
        return PLACED[mod]
    parts = mod.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else -1


def test_imports_point_down_the_layers():
    assert set(LAYERS) == {m.split(".")[1] for m in _modules() if m.count(".")} - {"__main__"}
    up = [(m, d) for m, deps in _graph().items() for d in deps if _rank(d) > _rank(m)]
    assert not up, up


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd="/", capture_output=True, text=True, check=True).stdout.strip()


def test_reading_results_imports_neither_torch_nor_the_training_code():
    code = ("import sys, fusionstudy; from fusionstudy.report import write, experiments, postmortem, figures, encoders; "
            "from fusionstudy import records; from fusionstudy.analysis import tables, verdicts; fusionstudy.load_study; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('fusionstudy.study', "
            "'fusionstudy.training', 'fusionstudy.data.', 'fusionstudy.models')) and m != 'fusionstudy.data.mmtk'))")
    assert _run(code) == "[]"


def test_optional_packages_are_imported_only_on_their_code_paths():
    code = ("import sys, fusionstudy.cli, fusionstudy.study.runner, fusionstudy.bench, fusionstudy.study.executors, "
            "fusionstudy.study.tracking, fusionstudy.report.write, fusionstudy.data.embeddings; "
            "print(sorted(m for m in ('ray', 'mlflow', 'sentence_transformers') if m in sys.modules))")
    assert _run(code) == "[]"


def test_no_python_file_over_500_lines():
    files = [*PKG.rglob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "benchmarks").glob("*.py"), ROOT / "train.py"]
    long = {p.name: n for p in files if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long


def test_the_root_holds_only_the_briefs_files():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not tracked:  # not a git checkout (an sdist): nothing to check
        return
    assert sorted(p for p in tracked if "/" not in p and p.endswith(".py")) == ["fusion.py", "train.py"]
    assert not [p for p in tracked if p.endswith(".whl")]
    big = [p for p in tracked if not p.startswith("results/") and (ROOT / p).is_file()
           and not (ROOT / p).is_symlink() and (ROOT / p).stat().st_size > 1_000_000]
    assert not big, big
    # the brief's fusion.py and models/ are the package's own code, not copies
    assert (ROOT / "fusion.py").resolve() == PKG / "models" / "fusion.py"
    assert (ROOT / "models").resolve() == PKG / "models"
