"""The structure map: every import points down the layers, and no module imports one
that imports it back. Layers, bottom to top:

    nn (the core, nn/tools/ aside) < envs < rl, generative < conf < nn/tools

`conf` registers the schemas that live beside the code they configure, so it sits above
that code; the tools (rlgen-train, -eval, ... ) sit on top of everything. rl/ and
generative/ share a layer and never import each other.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nn", "envs", "rl", "generative", "conf")


def layer(module: str) -> tuple[int, str]:
    """(height, package) of a module; two modules of one height may only import each
    other inside one package."""
    if module == "nn.tools" or module.startswith("nn.tools."):
        return 4, "nn.tools"
    top = module.split(".")[0]
    height = {"nn": 0, "envs": 1, "rl": 2, "generative": 2, "conf": 3}[top]
    return height, top


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the project modules it imports (at the top or inside a function)."""
    graph = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            found = set()
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0
                         and node.module else [])
                found |= {n for n in names if n.split(".")[0] in PACKAGES}
            graph[module] = found
    return graph


def arrows_up(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, deps in graph.items():
        height, package = layer(module)
        for dep in deps:
            dep_height, dep_package = layer(dep)
            if dep_height > height or (dep_height == height and dep_package != package):
                bad.append(f"{module} -> {dep}")
    return sorted(bad)


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for dep in graph.get(module, ()):
            if dep not in graph:
                continue
            if dep not in index:
                visit(dep)
                low[module] = min(low[module], low[dep])
            elif dep in on_stack:
                low[module] = min(low[module], index[dep])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_import_points_up_a_layer():
    assert arrows_up(import_graph()) == []


def test_no_module_imports_one_that_imports_it_back():
    assert circles(import_graph()) == []


def test_the_checks_see_an_arrow_up_and_a_circle():
    graph = {"nn.run": {"rl.dqn"}, "rl.dqn": {"nn.run", "rl.replay"}, "rl.replay": set(),
             "envs.snake": {"generative.vae"}, "rl.play": {"generative.acgan"},
             "generative.vae": set(), "generative.acgan": set()}
    assert arrows_up(graph) == ["envs.snake -> generative.vae", "nn.run -> rl.dqn",
                                "rl.play -> generative.acgan"]
    assert circles(graph) == [["nn.run", "rl.dqn"]]
