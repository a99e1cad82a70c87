"""The RocketMQ remoting protocol's asyncio adapters: ``server``, ``client``, ``channel``, ``limits``.

The sans-I/O wire codec they drive (``command``, ``frame``, ``headers``, ``codes``) lives in
``mqbench.broker.formats``. Which request codes a broker must serve for the official C++ client and
ali-ons is listed in the docstring of ``mqbench.broker.formats.codes``.
"""
from mqbench.broker.formats.command import RemotingCommand, decode_frame_content, encode_command
from mqbench.broker.formats.frame import FRAME_BYTES_MAX_DEFAULT, FrameDecoder

__all__ = ["RemotingCommand", "FrameDecoder", "FRAME_BYTES_MAX_DEFAULT", "encode_command", "decode_frame_content"]
