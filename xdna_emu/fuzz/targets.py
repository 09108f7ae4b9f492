"""The fuzz target registry: adding a target is one file.

A module of this package declares its targets in a module-level literal, read here with
``ast`` (nothing is imported, so ``xdna-emu fuzz --help`` needs neither the C shim nor
atheris)::

    FUZZ_TARGETS = [{"name": "threads", "help": "real threads on the real shim",
                     "worker": "xdna_emu.fuzz.threaded"}]

Keys (docs/spec/fuzzing.md §11): ``name``, ``help``, ``worker`` (the module run as
``python -m WORKER``), and optionally ``argv`` (extra worker arguments), ``builtin_argv`` (added
when the built-in engine runs), ``engines`` (default ``["builtin"]``; ``atheris`` first
makes it the default where atheris is installed), ``seeds`` (``"module:function"`` of a chip giving ``{name: bytes}`` for the corpus),
``current``
(the worker writes the example it runs to ``--current``, so a worker that dies names it),
``bench`` (``make fuzz-bench`` runs it) and ``order`` (listing order).

Every worker takes ``--chip --seconds --seed --stats --artifacts`` (and ``--corpus``,
``--current`` as declared), writes its stats file as it goes (``execs``, ``crashes``,
``hangs``, ``coverage``, ``corpus``, ``unique``, ``artifacts``, ``first_finding_s``,
``final``) and stops cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
VAR = "FUZZ_TARGETS"


@dataclass(frozen=True)
class FuzzTarget:
    name: str
    help: str
    worker: str
    argv: tuple[str, ...] = ()
    builtin_argv: tuple[str, ...] = ()
    engines: tuple[str, ...] = ("builtin",)
    seeds: str | None = None
    current: bool = False
    bench: bool = False
    aie4: bool = True  # it runs on AIE4 chips (fuzz-bench leaves it out of their rows)
    order: int = 100
    source: str = field(default="", compare=False)

    def load_seeds(self, chip: str) -> dict[str, bytes]:
        """The target's seed corpus (none without a ``seeds`` function)."""
        if self.seeds is None:
            return {}
        import importlib

        mod, _, fn = self.seeds.partition(":")
        return getattr(importlib.import_module(mod), fn)(chip)


class RegistryError(ValueError):
    """A malformed FUZZ_TARGETS declaration."""


def _declared(path: Path) -> list[dict]:
    tree = ast.parse(path.read_text(), str(path))
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == VAR for t in targets) and node.value is not None:
                try:
                    value = ast.literal_eval(node.value)
                except ValueError as exc:
                    raise RegistryError(f"{path.name}: {VAR} must be a literal: {exc}") from None
                if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                    raise RegistryError(f"{path.name}: {VAR} must be a list of dicts")
                return value
    return []


def discover(directory: Path = HERE) -> dict[str, FuzzTarget]:
    """Every target declared by a module in ``directory``, by name, in listing order."""
    known = {f.name for f in FuzzTarget.__dataclass_fields__.values()} - {"source"}
    found: list[FuzzTarget] = []
    for path in sorted(directory.glob("*.py")):
        for decl in _declared(path):
            unknown = set(decl) - known
            missing = {"name", "help", "worker"} - set(decl)
            if unknown or missing:
                raise RegistryError(f"{path.name}: {VAR} entry {decl.get('name')!r}: "
                                    f"unknown keys {sorted(unknown)}, missing {sorted(missing)}")
            kw = {k: tuple(v) if isinstance(v, list) else v for k, v in decl.items()}
            found.append(FuzzTarget(**kw, source=path.name))
    out: dict[str, FuzzTarget] = {}
    for t in sorted(found, key=lambda t: (t.order, t.name)):
        if t.name in out:
            raise RegistryError(f"fuzz target {t.name!r} declared twice ({out[t.name].source}, {t.source})")
        out[t.name] = t
    return out


@cache
def registry() -> dict[str, FuzzTarget]:
    """The targets of this package (read once)."""
    return discover()
