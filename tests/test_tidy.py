"""Tidy rules that keep the sans-I/O cores pure (design: "Style" 1 and 2).

A pure module takes bytes, messages and ticks and returns bytes, messages and work to do; time and
randomness are passed in. So it may not import the modules through which a program reaches the
clock, global randomness, files, sockets or threads. Checked on the source (AST), not by importing
it: ``import x``, ``import x.y`` and ``from x import y`` all count, at any depth of the module
(inside functions and ``if TYPE_CHECKING`` too: a type-only need is met with a Protocol).

A pure module may also import, from this project, only other pure modules (and ``mqbench.errors``),
so purity cannot leak in through a helper. Package ``__init__`` files that an import runs are not
followed (``mqbench.broker.timer``'s pulls in the delay service); the rule is about each module's
own code.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# setup.py's package_dir: import prefix -> folder
PACKAGE_DIRS = {"mqbench.codecs": "codecs", "mqbench.broker": "broker", "mqbench.migrate": "migrate",
                "mqbench.workloads": "workloads", "mqbench": "mqbench"}

FORBIDDEN = {"asyncio", "socket", "os", "time", "random", "threading",
             # the same reach under other names
             "subprocess", "selectors", "mmap", "fcntl", "signal", "shutil"}

# The pure modules, decided by reading them (file paths from the repository root).
PURE = [
    # The Raft core: roles as tables, log, flow control, messages, wire codec, the storage
    # interface and its in-memory implementation. Excluded: transport.py and driver.py (asyncio;
    # the storages on files live in store/), sim/ (the simulator owns the seeded Random and times
    # its runs: it is the driver that injects time and randomness into the core).
    "broker/raft/auth.py",
    "broker/raft/config.py",
    "broker/raft/log.py",
    "broker/raft/node.py",
    "broker/raft/progress.py",
    "broker/raft/storage.py",
    "broker/raft/types.py",
    "broker/raft/wire.py",
    # RocketMQ's formats (broker/formats, the bottom floor): records, properties, client batches,
    # queue units, checkpoint, DLedger framing, index file, timer units, fastjson configs, topic
    # names, the restamp of a record, and the remoting wire codec. Every module of broker/formats is
    # listed (test_every_formats_module_is_pure) except those in FORMATS_NOT_PURE.
    # POP: the receipt handle, the ck/ack/oLock records, the engine's state table, its plans, the
    # leader's spans and merge buffer, the orderly locks (the service and the store view are its
    # adapters).
    "broker/pop/engine.py",
    "broker/pop/handles.py",
    "broker/pop/orderly.py",
    "broker/pop/plans.py",
    "broker/pop/records.py",
    "broker/pop/spans.py",
    "broker/pop/state.py",
    "broker/formats/batch.py",
    "broker/formats/buffers.py",
    "broker/formats/checkpoint.py",
    "broker/formats/configs.py",
    "broker/formats/dledger.py",
    "broker/formats/fastjson.py",
    "broker/formats/index_file.py",
    "broker/formats/properties.py",
    "broker/formats/queues.py",
    "broker/formats/record.py",
    "broker/formats/record_layout.py",
    "broker/formats/record_peek.py",
    "broker/formats/record_check.py",
    "broker/formats/record_fields.py",
    "broker/formats/restamp.py",
    "broker/formats/timer_formats.py",
    "broker/formats/topics.py",
    "broker/formats/admin_bodies.py",
    "broker/formats/codes.py",
    "broker/formats/command.py",
    "broker/formats/frame.py",
    "broker/formats/headers.py",
    "broker/formats/headers_pop.py",
    "broker/formats/signature.py",
    "broker/formats/tags.py",
    # The codec registry. Excluded: codecs/bench.py (times codecs with the clock).
    "codecs/registry.py",
    # The Ray node clock offset estimator (samples injected). Excluded: the rest of mqbench/ray (Ray).
    "mqbench/ray/clock.py",
    "mqbench/ray/placement.py",
    # Delayed messages: settings, the delivery plan (what the replicated progress marker says), the
    # planner (the delay service's decisions, time injected) and the rewrite of a delayed message.
    # Excluded: service.py (the planner's asyncio adapter), wiring.py (asyncio), files.py and
    # index.py (files). migrate/reframe.py is pure itself but imports versions.py (files).
    "broker/timer/config.py",
    "broker/timer/plan.py",
    "broker/timer/planner.py",
    "broker/timer/rewrite.py",
    # The broker's message counters over time (mqadmin's stats), fed with the time.
    "broker/server/stats.py",
    # The layout's room links (a validated value; the link model and proxy are mqbench/dr/netem).
    "broker/layout_links.py",
    # The error hierarchy every pure module raises from.
    "mqbench/errors.py",
]


# Modules of broker/formats that are not pure, each with the reason.
FORMATS_NOT_PURE = {
    # keeps a threading.local cache of codec contexts (they are not thread-safe); moving that
    # cache out would change every caller of the compression rules.
    "broker/formats/compression.py",
}


# Project modules a pure module may import although they are not pure themselves, each with the
# reason. mqbench.native reads MQBENCH_NATIVE once and imports a compiled accelerator that has the
# pure function's contract (same results for every input), so the importer stays pure.
PURE_IMPORTS_ALLOWED = {"mqbench.native"}


def module_name(path: str) -> str:
    for prefix, folder in PACKAGE_DIRS.items():
        if path.startswith(folder + "/"):
            rest = path[len(folder) + 1:-len(".py")].replace("/", ".")
            return prefix if rest == "__init__" else f"{prefix}.{rest.removesuffix('.__init__')}"
    raise ValueError(f"{path} is in no package folder")


def module_file(name: str) -> Path | None:
    """The source file of project module ``name``, or None when it is not a project module file."""
    for prefix, folder in PACKAGE_DIRS.items():
        if name == prefix or name.startswith(prefix + "."):
            rest = name[len(prefix):].lstrip(".").replace(".", "/")
            base = ROOT / folder / rest if rest else ROOT / folder
            for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                if candidate.is_file():
                    return candidate
            return None
    return None


def imports_of(path: str) -> list[tuple[int, str]]:
    return imports_in((ROOT / path).read_text(), module_name(path), is_package=path.endswith("__init__.py"))


def imports_in(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``source`` (module ``module``), in line
    order; ``from p import n`` yields ``p.n`` when that is a module of this project, else ``p``."""
    package = module if is_package else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                full = f"{base}.{alias.name}"
                target = module_file(full)
                found.append((node.lineno, full if target is not None and target.name != "__init__.py" else base))
    return sorted(found)


def test_every_listed_module_exists():
    missing = [path for path in PURE if not (ROOT / path).is_file()]
    assert not missing, f"pure modules listed in tests/test_tidy.py that no longer exist: {missing}"


def test_every_formats_module_is_pure():
    """The bottom floor stays pure: a new module in broker/formats is listed as pure or named, with
    its reason, in FORMATS_NOT_PURE."""
    folder = ROOT / "broker" / "formats"
    found = {str(p.relative_to(ROOT)) for p in folder.glob("*.py") if p.name != "__init__.py"}
    unlisted = sorted(found - set(PURE) - FORMATS_NOT_PURE)
    assert not unlisted, f"broker/formats modules neither in PURE nor in FORMATS_NOT_PURE: {unlisted}"


@pytest.mark.parametrize("path", PURE)
def test_pure_module_imports_no_io(path):
    bad = [f"{path}:{line}: imports {name}" for line, name in imports_of(path) if name.split(".")[0] in FORBIDDEN]
    assert not bad, "a pure module reaches for I/O, the clock or global randomness (inject it instead):\n" + \
        "\n".join(bad)


@pytest.mark.parametrize("path", PURE)
def test_pure_module_imports_only_pure_project_modules(path):
    pure_names = {module_name(p) for p in PURE}
    bad = []
    for line, name in imports_of(path):
        if not name.startswith("mqbench"):
            continue
        target = module_file(name)
        if target is None:
            continue
        if target.name == "__init__.py":
            continue  # package imports: see the module docstring
        if name not in pure_names and name not in PURE_IMPORTS_ALLOWED:
            bad.append(f"{path}:{line}: imports {name}, which is not in the pure list")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_every_import_form():
    """The checker itself: each import form of a forbidden module is found, relative imports are
    resolved, and a harmless import is not reported as forbidden."""
    source = ("import struct\nimport os.path\nfrom time import monotonic\n"
              "def f():\n    import random as r\n    from asyncio import sleep\n"
              "from .types import Entry\nfrom . import log\nfrom mqbench.broker.store import versions\n")
    names = [name for _, name in imports_in(source, "mqbench.broker.raft.sample")]
    assert names == ["struct", "os.path", "time", "random", "asyncio", "mqbench.broker.raft.types",
                     "mqbench.broker.raft.log", "mqbench.broker.store.versions"]
    assert [n for n in names if n.split(".")[0] in FORBIDDEN] == ["os.path", "time", "random", "asyncio"]


def test_the_raft_package_imports_nothing_from_the_store():
    """Raft is the floor below the store: the storages on files (DLedger's, the broker commitlog's)
    live in broker/store and implement the core's Storage there; raft/ never reaches up."""
    bad = [f"{path}:{line}: imports {name}"
           for path in sorted(str(p.relative_to(ROOT)) for p in (ROOT / "broker" / "raft").rglob("*.py"))
           for line, name in imports_of(path) if name.startswith("mqbench.broker.store")]
    assert not bad, "\n".join(bad)
