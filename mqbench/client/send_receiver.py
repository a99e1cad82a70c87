"""``SendReceiver``: one send of ``Producer.submit_to`` as the caller's own record, filed in the
channel's table of pending requests (``remoting.sending.Receiver``), so a load generator keeps no
future, Task or callback per send and takes each answer in the read that brought it."""
from __future__ import annotations

import asyncio
import logging

from mqbench.broker.formats import codes
from mqbench.broker.formats.command import RemotingCommand
from mqbench.broker.remoting.sending import Receiver
from mqbench.client.connections import TRANSPORT_ERRORS, ClientError
from mqbench.client.producer import DELIVERED, RETRIED, _Attempt

log = logging.getLogger(__name__)


class SendReceiver(Receiver):
    """One send of ``Producer.submit_to``, filed in the channel's table of pending requests under
    its opaque (``remoting.sending.Receiver``). The answer is judged as ``submit`` judges it:
    SEND_OK and the flush/slave answers call ``delivered()``; an answer in ``RETRIED``, no answer
    within the send timeout or a broken connection go on as ``send``'s next attempt (another
    broker name, a fresh route, in a task), whose outcome calls ``delivered()`` or
    ``given_up(exc)``; any other answer calls ``given_up(ClientError)`` at once. A subclass
    (the caller's record of the send) implements ``delivered``, ``given_up`` and ``text`` (the
    property text, for a retry). The answer's header is not parsed (the caller does not read a
    ``SendResult``). Hooks run inside the channel's read: an exception there is logged, never
    raised into the read.

    The deliveries of one read come together (``Receiver.QUICK_CODES``: the channel takes them
    without building their commands): ``delivered_together(receivers)`` once, whose default calls
    each one's ``delivered()``; a subclass may count them in one step instead."""

    __slots__ = ("producer", "topic", "body", "sys_flag", "queue", "addr", "uniq_key")

    QUICK_CODES = frozenset(DELIVERED)

    @classmethod
    def delivered_together(cls, receivers: list["SendReceiver"]) -> None:
        """``delivered()`` of each of a read's deliveries, in the order they came (class doc)."""
        for receiver in receivers:
            try:
                receiver.delivered()
            except Exception:  # noqa: BLE001 - as ``answered``: the others and the read go on
                log.exception("send answer handling failed")

    @classmethod
    def answered_together(cls, receivers: list) -> None:
        # the answers of one read came over one connection: one producer's, one broker address
        first = receivers[0]
        try:
            first.producer._heartbeat_addrs.add(first.addr)
            cls.delivered_together(receivers)
        except Exception:  # noqa: BLE001 - the channel's read must go on
            log.exception("send answer handling failed")

    def delivered(self) -> None:
        raise NotImplementedError

    def given_up(self, exc: BaseException | None) -> None:
        """After the last attempt (``exc``), or None when the retry was cancelled (the caller gave up)."""
        raise NotImplementedError

    def text(self) -> str:
        raise NotImplementedError

    def answered(self, response: RemotingCommand) -> None:
        code = response.code
        try:
            if code in DELIVERED:
                self.producer._heartbeat_addrs.add(self.addr)
                self.delivered()
                return
            text = f"{codes.response_name(code)} {response.remark or ''}".strip()
            if code in RETRIED:
                self._retry(_Attempt(text), True)
            else:
                self.given_up(ClientError(f"send to {self.topic!r} on {self.queue.broker_name}: {text}"))
        except Exception:  # noqa: BLE001 - the channel's read must go on
            log.exception("send answer handling failed")

    set_result = answered     # the channel's call, without a hop through Receiver.set_result

    def failed(self, exc: BaseException) -> None:
        try:
            if isinstance(exc, TRANSPORT_ERRORS):
                self._retry(exc, True)
            else:
                self.given_up(exc)
        except Exception:  # noqa: BLE001 - the channel's read (or close) must go on
            log.exception("send failure handling failed")

    def _retry(self, failure: BaseException, refresh: bool) -> None:
        producer, broker = self.producer, self.queue.broker_name
        result = asyncio.get_running_loop().create_future()
        result.add_done_callback(self._settled)
        producer._continue(result, producer._send(
            codes.SEND_MESSAGE_V2, self.topic, self.body, self.sys_flag, 0, self.text(), [self.uniq_key],
            first_attempt=2, failures=[f"{broker} ({self.addr}): {failure}"], avoid=broker, refresh=refresh))

    def _settled(self, result: asyncio.Future) -> None:
        if result.cancelled():
            self.given_up(None)
        elif result.exception() is not None:
            self.given_up(result.exception())
        else:
            self.delivered()
