"""``python -m mqbench.broker.namesrv --listen HOST:PORT``: run a name server until SIGTERM/SIGINT.

Prints ``namesrv listening on HOST:PORT`` once it accepts connections (the launcher's log shows
it). A bad flag or a port in use prints one line and exits with code 2.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from mqbench.broker.cluster_secret import read_secret_file
from mqbench.broker.namesrv.routes import BROKER_EXPIRY_MS_DEFAULT
from mqbench.broker.namesrv.server import SCAN_INTERVAL_MS_DEFAULT, NameServer
from mqbench.broker.remoting.client import parse_addr
from mqbench.broker.lifeline import watch_parent
from mqbench.errors import UserError
from mqbench.event_loop import use_event_loop
from mqbench.gc_pauses import settle_after_startup
from mqbench.loop_stalls import watch
from mqbench.profiling import start as start_profile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mqbench.broker.namesrv", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:9876", help="HOST:PORT to listen on (port 0 = any free port)")
    parser.add_argument("--broker-expiry-ms", type=int, default=BROKER_EXPIRY_MS_DEFAULT,
                        help="drop a broker address that has not registered for this long")
    parser.add_argument("--scan-interval-ms", type=int, default=SCAN_INTERVAL_MS_DEFAULT,
                        help="how often expired brokers are looked for")
    parser.add_argument("--cluster-secret-file", default=None,
                        help="refuse REGISTER_BROKER/UNREGISTER_BROKER not signed with this cluster secret "
                             "(mqbench's layouts pass DIR/cluster.secret; default: accept every broker, as RocketMQ)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        host, port = parse_addr(args.listen) if not args.listen.endswith(":0") else (args.listen[:-2], 0)
        if args.broker_expiry_ms <= 0 or args.scan_interval_ms <= 0:
            raise UserError("--broker-expiry-ms and --scan-interval-ms must be positive")
        use_event_loop()
        return asyncio.run(_serve(host, port, args))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen on {args.listen}: {exc.strerror or exc}", file=sys.stderr)
        return 2


async def _serve(host: str, port: int, args) -> int:
    secret = read_secret_file(args.cluster_secret_file) if args.cluster_secret_file else None
    namesrv = NameServer(broker_expiry_ms=args.broker_expiry_ms, scan_interval_ms=args.scan_interval_ms,
                         secret=secret)
    bound_host, bound_port = await namesrv.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watch_parent(loop, stop.set)    # an embedded cluster's name server ends with the command that owns it
    settle_after_startup()   # short, rare collector pauses (mqbench.gc_pauses)
    watch("namesrv", loop)   # MQBENCH_LOOP_STALLS=DIR: count and explain loop stalls (mqbench.loop_stalls)
    profile = start_profile("namesrv", loop)   # MQBENCH_PROFILE=DIR (mqbench.profiling)
    print(f"namesrv listening on {bound_host}:{bound_port}", flush=True)
    await stop.wait()
    await namesrv.close()
    if profile is not None:
        profile.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
