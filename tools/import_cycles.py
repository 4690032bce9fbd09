"""Print every import cycle among Keyward's modules; exit 1 if there is one.

Imports inside functions count (grimp sees them); imports under `if TYPE_CHECKING:` do not.
import-linter holds the layers; this holds "nothing goes round in a circle" for every module.
"""

from __future__ import annotations

import sys

import grimp

PACKAGES = ("shared", "api", "portal", "partner_hub")


def strongly_connected(graph: grimp.ImportGraph) -> list[list[str]]:
    """Tarjan's algorithm over the module import graph: the groups of modules that import in a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0

    def visit(module: str) -> None:
        nonlocal counter
        index[module] = low[module] = counter
        counter += 1
        stack.append(module)
        on_stack.add(module)
        for imported in graph.find_modules_directly_imported_by(module):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups


def main() -> int:
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    groups = strongly_connected(graph)
    for group in groups:
        print(f"import cycle of {len(group)} modules: {', '.join(group)}")
    if not groups:
        print("no import cycles")
    return 1 if groups else 0


if __name__ == "__main__":
    raise SystemExit(main())
