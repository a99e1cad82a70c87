"""Inter-room network emulation without tc netem: a sans-I/O link model and an asyncio TCP proxy.

Serves ``mqbench dr`` only (hence its house). ``link``: ``LinkSettings`` (latency, jitter, loss as
TCP retransmission delay, cut; defined with the layout in ``mqbench.broker.layout_links``) and ``Pipe``,
the pure per-direction queue that says when each chunk of a stream is due. ``proxy``:
``DelayProxy``, the userspace proxy that applies a link per direction and can be cut and healed.
"""
from .link import NO_DELAY, LinkModel, LinkSettings, Pipe
from .proxy import DelayProxy, ProxyStats

__all__ = ["LinkSettings", "LinkModel", "Pipe", "NO_DELAY", "DelayProxy", "ProxyStats"]
