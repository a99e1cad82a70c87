"""The RocketMQ remoting protocol: sans-I/O codec (``command``, ``frame``, ``headers``, ``codes``)
and thin asyncio adapters (``server``, ``client``).

Which request codes a broker must serve for the official C++ client and ali-ons is listed in the
docstring of ``codes``.
"""
from mqbench.broker.remoting.command import RemotingCommand, decode_frame_content, encode_command
from mqbench.broker.remoting.frame import FRAME_BYTES_MAX_DEFAULT, FrameDecoder

__all__ = ["RemotingCommand", "FrameDecoder", "FRAME_BYTES_MAX_DEFAULT", "encode_command", "decode_frame_content"]
