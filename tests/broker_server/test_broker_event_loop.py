"""The broker, the name server, the run workers and the load generators run on uvloop when it is
importable, and on asyncio's own loop when MQBENCH_EVENT_LOOP=asyncio forces it or uvloop is missing
(see mqbench.event_loop)."""
import subprocess
import sys

import pytest

CHECK = ("import asyncio; from mqbench.event_loop import use_event_loop; name = use_event_loop(); "
         "loop = asyncio.new_event_loop(); print(name, type(loop).__module__); loop.close()")
# uvloop made unimportable, as on a platform without a build of it
MISSING = "import sys; sys.modules['uvloop'] = None; " + CHECK


def _run(env_value, code=CHECK):
    env = {"PATH": "/usr/bin:/bin"}
    if env_value is not None:
        env["MQBENCH_EVENT_LOOP"] = env_value
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_uvloop_by_default_when_installed():
    pytest.importorskip("uvloop")
    name, module = _run(None)
    assert name == "uvloop" and module.startswith("uvloop")


def test_asyncio_when_forced():
    name, module = _run("asyncio")
    assert name == "asyncio" and module.startswith("asyncio")


def test_asyncio_when_uvloop_is_missing():
    name, module = _run(None, MISSING)
    assert name == "asyncio" and module.startswith("asyncio")


def test_an_in_process_load_generator_leaves_the_policy_alone():
    code = ("import asyncio; from mqbench.event_loop import run_on_event_loop\n"
            "async def which(): return type(asyncio.get_running_loop()).__module__\n"
            "inner = run_on_event_loop(which()); outer = asyncio.run(which()); print(inner, outer)")
    inner, outer = _run(None, code)
    assert outer.startswith("asyncio")
    assert inner.startswith("uvloop" if _has_uvloop() else "asyncio")
    inner, outer = _run("asyncio", code)
    assert inner.startswith("asyncio") and outer.startswith("asyncio")


def _has_uvloop():
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True
