"""The import rules of the package (aesthetics.md §5.4), checked on the source."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nava_dub"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every nava_dub module -> the nava_dub modules it imports (anywhere in the file, lazy ones too)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name, found = _module_name(path), set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("nava_dub")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                if base.startswith("nava_dub"):
                    found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in _all_modules() else base for a in node.names}
        graph[name] = found - {name}
    return graph


def _all_modules() -> set[str]:
    return {_module_name(p) for p in PACKAGE.rglob("*.py")}


def _importers_of(target: str) -> set[str]:
    return {m for m, deps in _imports().items() if any(d == target or d.startswith(target + ".") for d in deps)}


def test_model_package_stands_alone():
    for module, deps in _imports().items():
        if module == "nava_dub.model" or module.startswith("nava_dub.model."):
            outside = {d for d in deps if not (d == "nava_dub.model" or d.startswith("nava_dub.model."))}
            assert not outside, f"{module} imports {outside}: model files know nothing outside model/"


def test_only_the_cli_renders_and_nothing_imports_the_cli():
    assert _importers_of("nava_dub.cli") <= {"nava_dub.__main__"}
    assert _importers_of("nava_dub.render") <= {"nava_dub.cli"}


def test_only_entry_points_import_the_pipeline():
    assert _importers_of("nava_dub.pipeline") <= {"nava_dub.cli", "nava_dub.batch"}


def test_foundation_modules_import_nothing_above_them():
    graph = _imports()
    assert graph["nava_dub.errors"] == set()
    assert graph["nava_dub.timeline"] <= {"nava_dub.errors"}
    assert graph["nava_dub.plan"] <= {"nava_dub.errors", "nava_dub.options", "nava_dub.timeline"}


def test_adapters_are_independent():
    adapters = {"nava_dub.media", "nava_dub.transcribe", "nava_dub.diarize"}
    graph = _imports()
    for adapter in adapters & graph.keys():
        assert not (graph[adapter] & (adapters - {adapter})), f"{adapter} imports another adapter"


def test_no_import_cycles():
    graph = _imports()
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for dep in graph.get(node, ()):
            assert state.get(dep) != 1, f"import cycle: {' -> '.join(path + [dep])}"
            if dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for module in graph:
        if module not in state:
            visit(module, [module])


def test_importing_the_package_and_cli_stays_light():
    code = ("import sys, nava_dub, nava_dub.cli; heavy = {'torch', 'numpy', 'whisperx', 'pyannote', 'transformers'}"
            " & {m.split('.')[0] for m in sys.modules}; print(sorted(heavy))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", f"importing nava_dub/cli pulls in {result.stdout.strip()}"
