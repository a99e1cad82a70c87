"""A pooled message's send in the run producer (``producer_driver.ProducerDriver``).

At a rate the producer worker sends the messages of a pool again and again (``run.pool``); each
has its property text prebuilt once, before the clock starts (``property_template``: a
``pipeline.PropertyTemplate`` with slots for the per-send intended time, delivery time and id,
the same bytes as the general path's ``OutgoingMessage``), and its send goes as a ``PooledSend``
record (``Producer.submit_to``): no future, the channel hands the answer straight to it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from mqbench.broker.formats.record import encode_properties
from mqbench.client import OutgoingMessage
from mqbench.client.pipeline import PropertyTemplate
from mqbench.client.send_receiver import SendReceiver
from mqbench.errors import MqbenchError
from mqbench.run.stamps import PROPERTY_DELIVER_NS, PROPERTY_INTENDED_NS, stamp
from mqbench.workloads.message import TraceMessage

if TYPE_CHECKING:
    from mqbench.run.producer_driver import ProducerDriver

NS_PER_MS = 1_000_000
# where a pooled message's per-send values go in its property template (NUL: never in the text)
_MARK_INTENDED, _MARK_DELIVER, _MARK_ID = "\x00intended\x00", "\x00deliver\x00", "\x00id\x00"


class PooledSend(SendReceiver):
    """One pooled message's send (``Producer.submit_to``): the driver's record of it sits in the
    channel's table of pending requests and its answer comes straight back here (no future)."""

    __slots__ = ("driver", "intended", "message", "sent_ns", "template")

    driver: ProducerDriver
    intended: int
    message: TraceMessage
    sent_ns: int
    template: PropertyTemplate

    def delivered(self) -> None:
        self.driver._acked_sends((self,), 1)

    @classmethod
    def delivered_together(cls, receivers: list) -> None:
        """A read's deliveries counted in one step (``ProducerDriver._acked_sends``): the sends on
        one connection are one producer's, so one driver's."""
        receivers[0].driver._acked_sends(receivers, len(receivers))

    def given_up(self, exc: BaseException | None) -> None:
        driver = self.driver
        if driver._gave_up:
            return
        if exc is None:           # its retry was cancelled: neither acked nor failed
            driver._window_release()
        else:
            driver._failed([(self.intended, self.message)], exc)

    def failed(self, exc: BaseException) -> None:
        if not self.driver._gave_up:      # after ``_wait_acks`` gave up: no retry of what is over
            super().failed(exc)

    def values(self, uniq_key: str) -> tuple[str, ...]:
        """The template's per-send values: intended time, delivery time (delayed) and id."""
        if len(self.template.slots) == 2:
            return str(self.intended), uniq_key
        return str(self.intended), str(self.sent_ns + self.message.delay_ms * NS_PER_MS), uniq_key

    def text(self) -> str:
        return self.template.fill(self.values(self.uniq_key))


def property_template(templates: dict[int, tuple[TraceMessage, PropertyTemplate | None]],
                      message: TraceMessage, run_id: str) -> PropertyTemplate | None:
    """The property text of a pooled message with slots for its intended time, delivery time
    (delayed) and id, built once into ``templates`` (id -> (message, template); for the whole
    pool in ``ProducerDriver.prepare``, before the clock starts); None where a send needs the
    general path (an arbitrary delay's TIMER_DELIVER_MS is read off the wall clock per send)."""
    entry = templates.get(id(message))
    if entry is None:          # the entry holds the message, so its id is not reused meanwhile
        template = None
        try:
            template = build_property_template(message, run_id)
        except MqbenchError:
            pass               # a message the general path refuses: it does so at its send
        entry = templates[id(message)] = (message, template)
    return entry[1]


def build_property_template(message: TraceMessage, run_id: str) -> PropertyTemplate | None:
    """``ProducerDriver._outgoing``'s message with marks for the per-send values, its text split
    at them."""
    if message.delay_ms and not message.delay_level:
        return None
    properties = stamp(message.properties, run_id, 0, 0 if message.delay_ms else None)
    properties[PROPERTY_INTENDED_NS] = _MARK_INTENDED
    if message.delay_ms:
        properties[PROPERTY_DELIVER_NS] = _MARK_DELIVER
    out = OutgoingMessage(message.topic, message.body, tags=message.tags or None,
                          keys=[message.key] if message.key else [], properties=properties,
                          delay_level=message.delay_level)
    text = encode_properties(out.wire_properties(_MARK_ID)).decode("utf-8")
    return PropertyTemplate(text, (_MARK_INTENDED, _MARK_DELIVER, _MARK_ID))
