"""The layers' imports point one way: krylov/ <- operators/ <- curvature/ <- laplace/.

Parsed with ast, so a violation fails here before anyone has to notice it in review."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fastlanczos"
LAYERS = ("krylov", "operators", "curvature", "laplace")
# layer -> the packages it must never import
FORBIDDEN = {
    "krylov": {"operators", "curvature", "laplace", "api", "gmrf", "demo"},
    "operators": {"curvature", "laplace", "api", "gmrf", "demo"},
    "curvature": {"laplace", "api", "gmrf", "demo"},
}


def imported_fastlanczos_modules(path: Path, source=None):
    """Top-level fastlanczos sub-packages/modules (e.g. 'krylov') that a file imports."""
    module = path.relative_to(PACKAGE.parent).with_suffix("").parts  # ('fastlanczos', ...)
    package = module[:-1]  # what a relative import of level 1 starts from
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name.split(".") for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
            else:
                base = []
            stem = base + (node.module.split(".") if node.module else [])
            names = [stem] if node.module else [stem + [a.name] for a in node.names]
        else:
            continue
        for parts in names:
            if parts[:1] == ["fastlanczos"] and len(parts) > 1:
                found.add(parts[1])
    return found


def files_of(layer):
    return sorted((PACKAGE / layer).rglob("*.py"))


def test_every_layer_exists():
    for layer in LAYERS:
        assert (PACKAGE / layer / "__init__.py").is_file(), layer


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_down(layer):
    bad = {}
    for path in files_of(layer):
        hits = imported_fastlanczos_modules(path) & FORBIDDEN[layer]
        if hits:
            bad[str(path.relative_to(PACKAGE))] = sorted(hits)
    assert not bad, f"{layer}/ imports a layer above it: {bad}"


def test_the_parser_sees_relative_and_absolute_imports():
    """The check itself can fail: an upward import written any of these ways is caught."""
    probe = PACKAGE / "krylov" / "probe.py"  # never written: its source is given
    source = ("from ..laplace import LaplacePosterior\nimport fastlanczos.curvature.ggn\n"
              "from .. import operators\nfrom .lanczos import run_lanczos\n")
    assert imported_fastlanczos_modules(probe, source) == {"laplace", "curvature", "operators",
                                                           "krylov"}


def test_init_only_reexports():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    defs = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                        ast.ClassDef))]
    assert not defs, f"fastlanczos/__init__.py defines {defs}: move them into a layer"
    for layer in LAYERS:
        sub = ast.parse((PACKAGE / layer / "__init__.py").read_text())
        assert not [n for n in sub.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))], layer


def test_public_names_and_paths_still_resolve():
    import fastlanczos
    import fastlanczos.curvature as curvature
    import fastlanczos.gmrf as gmrf

    for name in fastlanczos.__all__:
        assert hasattr(fastlanczos, name), name
    for name in ("ggn_vp", "hessian_vp", "ef_vp", "ggn_diagonal", "ef_diagonal"):
        assert callable(getattr(curvature, name)), name
    assert callable(gmrf.grid_precision)
    assert callable(fastlanczos.ops.available)
