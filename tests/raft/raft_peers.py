"""Wiring for the Raft driver tests that run real transports on loopback in one event loop."""
from __future__ import annotations


def connect_all(transports: dict) -> None:
    """Give every started transport (replica id -> ``RaftTransport``) every other one's address."""
    for i, transport in transports.items():
        for j, peer in transports.items():
            if i != j:
                transport.set_peer_address(j, (peer.host, peer.port))
