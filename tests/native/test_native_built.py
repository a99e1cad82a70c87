"""Every accelerator listed in mqbench/native.py's MODULES is built and importable wherever a C
compiler is present (the install builds them optional, so a broken build would otherwise only
show as a slower run), and MQBENCH_NATIVE switches them as documented."""
from __future__ import annotations

import importlib
import shutil
import subprocess
import sys

import pytest

from mqbench import native


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="no C compiler on this machine: the accelerators are optional and not built")
def test_every_listed_accelerator_is_built() -> None:
    for name in native.MODULES:
        importlib.import_module(name)


def _mode_in_child(value: str, name: str) -> str:
    code = ("from mqbench import native\n"
            "try:\n"
            f"    print(native.mode(), native.load({name!r}) is not None, native.status())\n"
            "except native.NativeMissing as exc:\n"
            "    print('missing', exc)\n")
    env = {"MQBENCH_NATIVE": value, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_switch_off_and_require() -> None:
    assert _mode_in_child("0", "mqbench.no_such_accelerator").startswith("off False")
    assert _mode_in_child("1", "mqbench.no_such_accelerator").startswith("on False")
    out = _mode_in_child("require", "mqbench.no_such_accelerator")
    assert out.startswith("missing mqbench.no_such_accelerator is not built")
    assert native.mode() in ("on", "off", "require")


def test_a_build_older_than_its_sources_is_stale(tmp_path) -> None:
    """A checkout updated without rebuilding: the old build would not match the Python code that
    calls it (helpers saw TypeErrors after a rebase), so load() skips it (or, under require,
    refuses it) instead of calling into it."""
    import os
    (tmp_path / "pkg").mkdir()
    (tmp_path / "broker" / "formats").mkdir(parents=True)
    source = tmp_path / "pkg" / "_x.c"
    header = tmp_path / "broker" / "formats" / "shared.h"
    built = tmp_path / "pkg" / "_x.so"
    for path in (source, header, built):
        path.write_text("x")
    os.utime(source, ns=(1_000, 1_000))
    os.utime(header, ns=(1_000, 1_000))
    os.utime(built, ns=(2_000, 2_000))
    assert native.stale_source(str(built), ["pkg/_x.c"], root=tmp_path) is None
    os.utime(header, ns=(3_000, 3_000))
    assert native.stale_source(str(built), ["pkg/_x.c"], root=tmp_path) == "broker/formats/shared.h"
    os.utime(header, ns=(1_000, 1_000))
    os.utime(source, ns=(3_000, 3_000))
    assert native.stale_source(str(built), ["pkg/_x.c"], root=tmp_path) == "pkg/_x.c"
    assert native.stale_source(None, ["pkg/_x.c"], root=tmp_path) is None
    assert native.stale_source(str(tmp_path / "gone.so"), ["pkg/_x.c"], root=tmp_path) is None


def test_current_builds_are_not_stale() -> None:
    for name, sources in native.MODULES.items():
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        assert native.stale_source(module.__file__, sources) is None, f"{name}: rebuild with pip install -e ."


def test_every_c_source_is_listed_once() -> None:
    """A module split by concern is compiled from all its listed sources, and load()'s stale check
    compares exactly those: a C file in the tree that MODULES does not list would be left out of
    both (an undefined symbol at import, or a stale build taken as current)."""
    listed = [source for sources in native.MODULES.values() for source in sources]
    assert len(listed) == len(set(listed))
    found = {str(path.relative_to(native.ROOT)) for folder in ("broker", "migrate", "codecs", "mqbench", "workloads")
             for path in (native.ROOT / folder).rglob("*.c")}
    if not found:
        pytest.skip("an installed wheel carries no C sources")
    assert found == set(listed)


def test_a_change_to_any_source_of_a_split_module_is_stale(tmp_path) -> None:
    import os
    (tmp_path / "pkg").mkdir()
    sources = ["pkg/_x.c", "pkg/_x_part.c"]
    built = tmp_path / "pkg" / "_x.so"
    for path in [tmp_path / s for s in sources] + [built]:
        path.write_text("x")
        os.utime(path, ns=(1_000, 1_000))
    os.utime(built, ns=(2_000, 2_000))
    assert native.stale_source(str(built), sources, root=tmp_path) is None
    os.utime(tmp_path / "pkg" / "_x_part.c", ns=(3_000, 3_000))
    assert native.stale_source(str(built), sources, root=tmp_path) == "pkg/_x_part.c"
    os.utime(tmp_path / "pkg" / "_x_part.c", ns=(1_000, 1_000))
    header = tmp_path / "pkg" / "_x_table.h"          # a header beside the sources (migrate/_scan_*.h)
    header.write_text("x")
    os.utime(header, ns=(3_000, 3_000))
    assert native.stale_source(str(built), sources, root=tmp_path) == "pkg/_x_table.h"
