"""A RemotingServer in a child process, for the resource-limit tests (its RSS is measured from
outside). argv[1] is JSON: ``limits`` (ServerLimits fields), ``response_bytes`` (the body of the
answer to code 11), ``lifetime_s``. Prints the port, then serves: code 11 answers a big body,
code 30 a small one."""
import asyncio
import json
import sys

from mqbench.broker.formats import codes
from mqbench.broker.remoting.server import RemotingServer


async def main(args: dict) -> None:
    async def big(cmd, channel):
        return cmd.response_to(codes.SUCCESS, None, {}, b"x" * args["response_bytes"])

    async def small(cmd, channel):
        return cmd.response_to(codes.SUCCESS, None, {"t": "1"})

    try:
        from mqbench.broker.remoting.limits import ServerLimits
        kw = {"limits": ServerLimits(**args["limits"])}
    except ImportError:      # a build without limits (to see the tests fail there)
        kw = {}
    server = RemotingServer({11: big, 30: small}, **kw)
    _, port = await server.start("127.0.0.1", 0)
    print(port, flush=True)
    await asyncio.sleep(args.get("lifetime_s", 120))
    await server.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
