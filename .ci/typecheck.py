"""mypy --strict on the sans-I/O modules (the pure list of tests/test_tidy.py), run by .ci/run.

mypy cannot follow setuptools' editable-install import hook, and the import names differ from the
folders (``broker/`` is ``mqbench.broker``, see setup.py), so it reads the code through a temporary
tree of symlinks shaped like the import names. Modules the pure list holds are checked strictly;
what they import from elsewhere is read for its types only (``follow_imports = silent`` in
pyproject.toml). Exit status: mypy's.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_tidy import PACKAGE_DIRS, PURE, module_name  # noqa: E402 - the one list of pure modules

# Pure modules not (yet) held to --strict, each with the reason (none left).
NOT_STRICT: set[str] = set()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="mqbench-mypy-") as tmp:
        top = Path(tmp) / "mqbench"
        top.mkdir()
        for entry in (ROOT / "mqbench").iterdir():
            os.symlink(entry, top / entry.name)
        for prefix, folder in PACKAGE_DIRS.items():
            if prefix != "mqbench":
                os.symlink(ROOT / folder, top / prefix.split(".", 1)[1])
        modules = sorted({module_name(path) for path in PURE if path not in NOT_STRICT})
        argv = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                "--cache-dir", str(ROOT / ".cache" / "mypy")]
        for module in modules:
            argv += ["-m", module]
        return subprocess.run(argv, cwd=tmp, env={**os.environ, "MYPYPATH": tmp}).returncode


if __name__ == "__main__":
    sys.exit(main())
