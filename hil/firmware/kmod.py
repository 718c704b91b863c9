"""Kernel module dependency closure from modules.dep (as written by depmod)."""

from __future__ import annotations


def normalize(name: str) -> str:
    return name.replace("-", "_")


def module_name(path: str) -> str:
    base = path.rsplit("/", 1)[-1]
    for ext in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if base.endswith(ext):
            base = base[: -len(ext)]
            break
    return normalize(base)


def parse_modules_dep(text: str) -> dict[str, list[str]]:
    """modules.dep lines `path: dep dep` -> {path: [deps]}."""
    deps: dict[str, list[str]] = {}
    for line in text.splitlines():
        if ":" not in line:
            continue
        path, rest = line.split(":", 1)
        deps[path.strip()] = rest.split()
    return deps


def closure(deps: dict[str, list[str]], names: list[str], builtin: set[str]) -> list[str]:
    """Module paths needed to load `names`, dependencies first; built-ins need nothing.

    Raises KeyError naming a module that is neither a module nor built in.
    """
    by_name = {module_name(p): p for p in deps}
    order: list[str] = []

    def visit(path: str) -> None:
        if path in order:
            return
        for dep in deps[path]:
            visit(dep)
        order.append(path)

    for name in names:
        n = normalize(name)
        if n in by_name:
            visit(by_name[n])
        elif n not in builtin:
            raise KeyError(name)
    return order


def parse_builtin(text: str) -> set[str]:
    """modules.builtin (paths of built-in drivers) -> module names."""
    return {module_name(line.strip()) for line in text.splitlines() if line.strip()}
