"""The repository's own shape: the runtime's layers import downwards only, and documents it names exist."""

import ast
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RUNTIME = REPO / "pvp_runtime"

# What each lower layer of pvp_runtime may import from the rest of it (docs/architecture.md, "Packages").
ALLOWED = {
    "contract": {"__version__"},  # pvp_runtime/__init__.py: the version string only, shipped with the contract
    "formats": {"contract"},
    "model": {"contract"},
    "loaders": {"contract", "formats", "model", "__version__"},
}


def runtime_imports(path: Path) -> set[str]:
    """The pvp_runtime subpackages or modules (first level) that one source file imports."""
    package = ["pvp_runtime", *path.relative_to(RUNTIME).parts[:-1]]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = base + (node.module.split(".") if node.module else [node.names[0].name])
            else:
                target = node.module.split(".")
            names = [target]
        elif isinstance(node, ast.Import):
            names = [alias.name.split(".") for alias in node.names]
        else:
            continue
        found.update(name[1] for name in names if name[0] == "pvp_runtime" and len(name) > 1)
    return found


def test_runtime_import_helper_resolves_relative_imports():
    assert runtime_imports(RUNTIME / "loaders" / "deca.py") >= {"contract", "model"}
    assert runtime_imports(RUNTIME / "fit" / "pipeline.py") >= {"bundle", "contract", "model"}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_lower_layers_never_import_upper_ones(layer):
    wrong = {}
    for path in sorted((RUNTIME / layer).rglob("*.py")):
        extra = runtime_imports(path) - ALLOWED[layer] - {layer}
        if extra:
            wrong[str(path.relative_to(REPO))] = sorted(extra)
    assert not wrong, f"pvp_runtime/{layer} may import only {sorted(ALLOWED[layer])}: {wrong}"


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    suffixes = {".py", ".md", ".sh", ".toml", ".json", ".txt"}
    return [REPO / name for name in listed.splitlines() if Path(name).suffix in suffixes and (REPO / name).is_file()]


def test_every_markdown_document_named_in_the_repository_exists():
    missing = []
    for path in tracked_text_files():
        for name in set(re.findall(r"[\w./-]+\.md\b", path.read_text(encoding="utf-8", errors="replace"))):
            if not (REPO / name).is_file() and not (path.parent / name).is_file():
                missing.append(f"{path.relative_to(REPO)}: {name}")
    assert not missing, missing


def test_the_extension_docstring_names_only_modules_that_exist():
    doc = ast.get_docstring(ast.parse((REPO / "pvp_blender" / "__init__.py").read_text(encoding="utf-8")))
    layers = doc.split("Layers", 1)[1].split("Nothing here imports torch", 1)[0]
    named = set(re.findall(r"``(\w+)``", layers))
    assert named and not {name for name in named if not (REPO / "pvp_blender" / f"{name}.py").is_file()}


def test_class_names_are_unique_across_the_runtime():
    """One name, one concept: two classes of one name (fit's and the model's MapperConfig) get mixed up."""
    defined = {}
    for path in sorted(RUNTIME.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef):
                defined.setdefault(node.name, []).append(str(path.relative_to(REPO)))
    assert not {name: paths for name, paths in defined.items() if len(paths) > 1}
