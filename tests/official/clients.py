"""Installs the official RocketMQ clients the compatibility tests drive, once, under ``.cache/``.

* The official C++ client: PyPI ``rocketmq`` 0.4.4, whose wheel bundles ``librocketmq.so``. It goes
  into its own virtual environment, because it is a test peer, not a dependency of mqbench.
* npm ``ali-ons`` 3.x, a pure-JS remoting client.

Each ``ensure_*`` returns what to run, or raises ``pytest.skip`` with the reason when the platform
cannot run the client (no x86-64 Linux wheel, no node/npm). An install failure on a platform that
can run it is an error, not a skip: a test that silently skips proves nothing.

Each install holds a lock file beside its folder, so ``python tests/official/clients.py`` (which
installs them all; ``.ci/run`` starts it in the background while lint and type checks run) and a
test that needs a client meanwhile never install into the same folder at once.
"""
from __future__ import annotations

import fcntl
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GRPC_PY_CLIENT = "5.1.2"   # the official 5.x Python client the grpc extra pins (pyproject.toml)
CACHE = Path(os.environ.get("MQBENCH_CLIENT_CACHE", ROOT / ".cache" / "official-clients"))
HERE = Path(__file__).resolve().parent


def _install_once(folder: Path, install) -> None:
    """Run ``install()`` unless ``folder/.installed`` exists, under an exclusive lock on
    ``folder.lock`` (a second caller waits for the first, then finds it installed)."""
    if (folder / ".installed").exists():
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / ".installed").exists():
            install()
            (folder / ".installed").touch()


def ensure_cpp_client() -> list[str]:
    """argv prefix to run ``cpp_driver.py`` with the official C++ client."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"rocketmq 0.4.4 ships librocketmq.so for x86-64 Linux only, not {sys.platform}/{platform.machine()}")
    venv = CACHE / "cpp-venv"
    python = venv / "bin" / "python"

    def install() -> None:
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "rocketmq==0.4.4"], check=True, timeout=600)
        subprocess.run([str(python), "-c", "import rocketmq.client"], check=True, timeout=60)
    _install_once(venv, install)
    return [str(python), str(HERE / "cpp_driver.py")]


def ensure_ons_client() -> list[str]:
    """argv prefix to run ``ons_driver.js`` with npm's ali-ons."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("ali-ons needs node and npm, which this machine does not have")
    prefix = CACHE / "ons"

    def install() -> None:
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(prefix), "ali-ons@3"],
                       check=True, timeout=600)
    _install_once(prefix, install)
    script = prefix / "ons_driver.js"
    shutil.copyfile(HERE / "ons_driver.js", script)  # so require('ali-ons') resolves from its node_modules
    return [node, str(script)]


def ensure_grpc_broker() -> None:
    """The brokers of these tests serve gRPC only with the ``grpc`` extra (it comes with ``test``);
    a venv made before the extra existed gets its requirements installed here, once."""
    try:
        import grpc  # noqa: F401
        from rocketmq.grpc_protocol import service_pb2  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "grpcio>=1.60", "protobuf>=6.33.5",
                        f"rocketmq-python-client=={GRPC_PY_CLIENT}"], check=True, timeout=900)


def ensure_grpc_py_client() -> list[str]:
    """argv prefix to run ``grpc_py_driver.py`` with PyPI's official 5.x client, in a process of
    its own. The ``test`` extra already installs that exact client (the ``grpc`` extra's stubs come
    from it), so this interpreter runs it; a venv without it gets its own venv under ``.cache/``
    (another 65 MB and ~15 s of CPU, which CI's background install no longer pays)."""
    try:
        if importlib.metadata.version("rocketmq-python-client") == GRPC_PY_CLIENT:
            return [sys.executable, str(HERE / "grpc_py_driver.py")]
    except importlib.metadata.PackageNotFoundError:
        pass
    venv = CACHE / "grpc-py-venv"
    python = venv / "bin" / "python"

    def install() -> None:
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"rocketmq-python-client=={GRPC_PY_CLIENT}"],
                       check=True, timeout=900)
        subprocess.run([str(python), "-c", "import rocketmq; rocketmq.Producer"], check=True, timeout=120)
    _install_once(venv, install)
    return [str(python), str(HERE / "grpc_py_driver.py")]


def ensure_grpc_node_client() -> list[str]:
    """argv prefix to run ``grpc_node_driver.js`` with npm's official 5.x client."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("rocketmq-client-nodejs needs node and npm, which this machine does not have")
    prefix = CACHE / "grpc-node"

    def install() -> None:
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(prefix),
                        "rocketmq-client-nodejs@1.0.8"], check=True, timeout=900)
    _install_once(prefix, install)
    script = prefix / "grpc_node_driver.js"
    shutil.copyfile(HERE / "grpc_node_driver.js", script)   # so require() resolves from its node_modules
    return [node, str(script)]


if __name__ == "__main__":
    # Install every client now (CI starts this in the background; the tests find them installed or
    # wait on the lock). A platform that cannot run a client is reported and skipped here too.
    for ensure in (ensure_cpp_client, ensure_ons_client, ensure_grpc_py_client, ensure_grpc_node_client):
        try:
            ensure()
            print(f"{ensure.__name__}: installed", flush=True)
        except pytest.skip.Exception as skipped:
            print(f"{ensure.__name__}: skipped: {skipped}", flush=True)
