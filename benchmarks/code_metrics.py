"""The shape of the code, in the figures the house style compares (issue 33): the largest
modules, function lengths (median, p90, how many over 40 lines), and docstring + comment lines
per code line for each package. Reads any checkout, so two commits can be put side by side:

    .venv/bin/python benchmarks/code_metrics.py [ROOT] [--largest 8] [--long]

ROOT defaults to this checkout; for another commit, ``git worktree add /tmp/old COMMIT`` and
pass /tmp/old. Counts Python files under autoprumux/ and trainers/ (the shipped code).
"""

from __future__ import annotations

import argparse
import ast
import io
import statistics
import tokenize
from dataclasses import dataclass
from pathlib import Path

LONG_FUNCTION = 40  # lines, the house style's threshold (nanoGPT p90 29, Optuna p90 33)
SHIPPED = ("autoprumux", "trainers")


@dataclass(frozen=True, kw_only=True)
class ModuleShape:
    path: str  # relative to the checkout
    lines: int  # every line of the file
    code: int  # lines holding code (not blank, not only a comment, not a docstring)
    explained: int  # lines of docstrings and comments
    functions: tuple[tuple[str, int], ...]  # (qualified name, lines from def to its end)


def package_of(path: str) -> str:
    """autoprumux/loop/driver.py -> autoprumux/loop; autoprumux/measurement.py -> autoprumux."""
    parts = Path(path).parts
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0]


def shape(root: Path, path: Path) -> ModuleShape:
    source = path.read_text()
    tree = ast.parse(source)
    docstring_lines: set[int] = set()
    functions: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    assert child.end_lineno is not None
                    functions.append((name, child.end_lineno - child.lineno + 1))
                visit(child, f"{name}.")
            elif isinstance(child, ast.Expr) and isinstance(child.value, ast.Constant):
                if isinstance(child.value.value, str):  # a docstring (or a bare string)
                    assert child.end_lineno is not None
                    docstring_lines.update(range(child.lineno, child.end_lineno + 1))
            else:
                visit(child, prefix)

    visit(tree, "")
    comment_lines = {
        token.start[0]
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }
    lines = source.splitlines()
    code = sum(
        1
        for number, line in enumerate(lines, start=1)
        if line.strip() and number not in docstring_lines and not line.lstrip().startswith("#")
    )
    return ModuleShape(
        path=str(path.relative_to(root)),
        lines=len(lines),
        code=code,
        explained=len(docstring_lines | comment_lines),
        functions=tuple(functions),
    )


def shapes(root: Path) -> list[ModuleShape]:
    return [
        shape(root, path)
        for top in SHIPPED
        for path in sorted((root / top).rglob("*.py"))
        if "__pycache__" not in path.parts
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--largest", type=int, default=8, help="how many modules to list")
    parser.add_argument("--long", action="store_true", help="list every function over 40 lines")
    args = parser.parse_args()
    root = Path(args.root).resolve()
    modules = shapes(root)
    lengths = sorted(n for m in modules for _, n in m.functions)
    long = sorted(
        ((n, f"{m.path}:{name}") for m in modules for name, n in m.functions if n > LONG_FUNCTION),
        reverse=True,
    )
    print(f"checkout: {root}")
    print(f"modules: {len(modules)}, lines: {sum(m.lines for m in modules):,}")
    print("\nlargest modules (lines):")
    for m in sorted(modules, key=lambda m: -m.lines)[: args.largest]:
        print(f"  {m.lines:5d}  {m.path}")
    p90 = lengths[int(0.9 * (len(lengths) - 1))]
    print(
        f"\nfunctions: {len(lengths)}, median {statistics.median(lengths):g} lines, p90 {p90}, "
        f"over {LONG_FUNCTION}: {len(long)} ({len(long) / len(lengths):.1%})"
    )
    for n, where in long if args.long else long[:5]:
        print(f"  {n:4d}  {where}")
    packages: dict[str, list[ModuleShape]] = {}
    for m in modules:
        packages.setdefault(package_of(m.path), []).append(m)
    print("\ndocstring + comment lines per code line, by package:")
    print(f"  {'package':<22} {'modules':>7} {'lines':>6} {'ratio':>6}")
    for name in sorted(packages):
        group = packages[name]
        code = sum(m.code for m in group)
        lines = sum(m.lines for m in group)
        ratio = f"{sum(m.explained for m in group) / code:.2f}" if code else "-"  # docs only
        print(f"  {name:<22} {len(group):>7} {lines:>6} {ratio:>6}")
    code = sum(m.code for m in modules)
    print(
        f"  {'all':<22} {len(modules):>7} {sum(m.lines for m in modules):>6} "
        f"{sum(m.explained for m in modules) / code:>6.2f}"
    )


if __name__ == "__main__":
    main()
