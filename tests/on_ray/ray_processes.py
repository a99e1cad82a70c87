"""The Ray processes running on this machine, as the Ray tests look for them (before, during and
after a cluster): by process name and command line."""
from __future__ import annotations

import os

import psutil

WORDS = ("raylet", "gcs_server", "ray::", "ray/_private", "ray/dashboard", "ray_client_server", "ray.util.client",
         "mqbray-")


def ray_processes(skip: set[int] = frozenset()) -> dict[int, str]:
    """pid -> name and command line (120 characters) of every Ray process but ``skip`` and this one."""
    found = {}
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["name"] or "")
        except psutil.Error:
            continue
        if proc.pid not in skip and proc.pid != os.getpid() and any(word in text for word in WORDS):
            found[proc.pid] = text[:120]
    return found
