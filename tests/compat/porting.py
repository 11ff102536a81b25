"""Bringing agents from the published Atoms SDK: the mechanical import rewrite, and loading
an agent module's source either as written (published SDK) or rewritten (ours).

The mapping (also in README, "Bringing agents from the Atoms SDK"):

    smallestai.atoms.agent.server              -> gateway.app        (AtomsApp)
    smallestai.atoms.agent.X                   -> agent.X            (events, nodes, session,
                                                                      context, clients, tools)
    smallestai.atoms.crew.server               -> gateway.app        (5.x names)
    smallestai.atoms.crew.nodes.output_crew    -> agent.nodes.output_agent
    smallestai.atoms.crew.nodes.background_crew -> agent.nodes.background_agent
    smallestai.atoms.crew.X                    -> agent.X
"""

from __future__ import annotations

import itertools
import re
import sys
import types
from pathlib import Path
from typing import Literal

AGENTS_DIR = Path(__file__).parent / "agents"

_MODULE = re.compile(r"\bsmallestai\.atoms\.(?:agent|crew)((?:\.\w+)*)")
_IMPORT_LINE = re.compile(r"^(\s*)(from|import)\s")
_RENAMED = {
    ".server": "gateway.app",
    ".nodes.output_crew": "agent.nodes.output_agent",
    ".nodes.background_crew": "agent.nodes.background_agent",
}
_ids = itertools.count(1)


def port_module_name(name: str) -> str:
    """Our module for a published SDK module path (other names are returned unchanged)."""
    match = _MODULE.fullmatch(name)
    if match is None:
        return name
    rest = match.group(1)
    for old, new in _RENAMED.items():
        if rest == old or rest.startswith(old + "."):
            return new + rest[len(old):]
    return "agent" + rest


def port_imports(source: str) -> str:
    """Rewrite the published SDK's module paths in the import statements of `source`.

    Only `import` / `from ... import` lines change (continuation lines of a parenthesised
    import list name classes, not modules, so they need no change)."""
    out = []
    for line in source.splitlines(keepends=True):
        if _IMPORT_LINE.match(line):
            line = _MODULE.sub(lambda m: port_module_name(m.group(0)), line)
        out.append(line)
    return "".join(out)


def agent_source(name: str) -> str:
    return (AGENTS_DIR / f"{name}.py").read_text()


def load_agent(name: str, flavor: Literal["published", "ours"]) -> types.ModuleType:
    """A fresh module object of `tests/compat/agents/<name>.py`: its own globals, so the two
    runs never share state. `ours` rewrites the imports first."""
    source = agent_source(name)
    if flavor == "ours":
        source = port_imports(source)
        left = [ln for ln in source.splitlines() if _IMPORT_LINE.match(ln) and "smallestai" in ln]
        if left:
            raise AssertionError(f"{name}: the rewritten source still imports smallestai: {left}")
    elif flavor != "published":
        raise ValueError(f"flavor must be 'published' or 'ours', got {flavor!r}")
    modname = f"compat_agent_{name}_{flavor}_{next(_ids)}"
    module = types.ModuleType(modname)
    module.__file__ = str(AGENTS_DIR / f"{name}.py")
    sys.modules[modname] = module  # pydantic and dataclasses look modules up by name
    exec(compile(source, module.__file__, "exec"), module.__dict__)
    return module
