"""The broker (and the run workers and the send benchmark's load generator) run on asyncio's loop
unless MQBENCH_EVENT_LOOP=uvloop asks for uvloop (see mqbench.event_loop for why it is opt-in)."""
import subprocess
import sys

import pytest

CHECK = ("import asyncio; from mqbench.event_loop import use_event_loop; name = use_event_loop(); "
         "loop = asyncio.new_event_loop(); print(name, type(loop).__module__); loop.close()")


def _run(env_value):
    env = {"PATH": "/usr/bin:/bin"}
    if env_value is not None:
        env["MQBENCH_EVENT_LOOP"] = env_value
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_asyncio_by_default():
    name, module = _run(None)
    assert name == "asyncio" and module.startswith("asyncio")


def test_uvloop_when_asked_and_installed():
    pytest.importorskip("uvloop")
    name, module = _run("uvloop")
    assert name == "uvloop" and module.startswith("uvloop")
