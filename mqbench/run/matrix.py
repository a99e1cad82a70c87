"""The cells of a run: ``--codec``/``--batch``/``--delay`` and the ``--matrix`` product of them.

A cell is one combination of the settings a run varies (``CellSettings``):

=========  ===============================  ======================================================
axis       values                           meaning
=========  ===============================  ======================================================
codec      a codec spec (``none``,          producer-side compression of each message body of at
           ``zstd:3``, ``lz4``, ...)        least ``compress_over_bytes`` (RocketMQ's rule)
batch      ``profile`` or an integer >= 1   messages per SEND_BATCH_MESSAGE: ``profile`` keeps
                                            each topic's own ``batch_msgs``, N applies to all
                                            topics (1 = no batching)
delay      ``on`` | ``off``                 ``on`` keeps the profile's delayed messages (DELAY level
                                            or TIMER_DELIVER_MS), ``off`` sends them undelayed
batch_     ``off`` | ``on``                 ``on`` compresses each whole batch body with the codec
compres-                                    (mqbench's batch envelope; RocketMQ never compresses
sion                                        batches, which is ``off``)
consume    ``pull`` | ``pop``               how the consumer groups consume: ``pull`` (client
                                            rebalance, RocketMQ 4.x push consumers) or ``pop``
                                            (RocketMQ 5's broker-side POP: pop, ack, invisible
                                            time); the cell's name ends ``,consume=pop`` for pop
layout     a layout name (``single``,       the embedded cluster's layout for the cell (each cell
           ``raft3``, ``3x3``) or a layout  gets a fresh cluster anyway); the cell's name starts
           ``.toml`` file                   with ``layout=...`` only when the matrix varies it
=========  ===============================  ======================================================

``--matrix "codec=none,zstd:3;batch=1,64;delay=off,on"``: axes separated by ``;``, values by ``,``;
the cells are the cartesian product in the order written (the first axis varies slowest). An axis
the matrix does not name keeps the value of its own flag. Pure: no I/O.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

from mqbench.codecs.registry import Codec, parse_codec
from mqbench.errors import UserError

AXES = ("codec", "batch", "delay", "batch_compression", "consume", "layout")
CONSUME_VALUES = ("pull", "pop")
DELAY_VALUES = ("on", "off")
BATCH_PROFILE = "profile"
BATCH_MSGS_MAX = 1024


def _no_codec() -> Codec:
    return parse_codec("none")


@dataclass(frozen=True)
class CellSettings:
    """One cell. ``codec`` is the parsed ``Codec`` that the run hands on as it is (to the payload
    measurement, the producer workers and the stored-bytes reading); a spec string given here is
    parsed once, at construction (UserError naming it when it is not a codec)."""

    codec: Codec = field(default_factory=_no_codec)
    batch: str = BATCH_PROFILE  # "profile" or a positive integer as text
    delay: str = "on"
    batch_compression: str = "off"
    layout: str | None = None  # None: the run's --layout (the matrix does not vary it)
    consume: str = "pull"

    def __post_init__(self) -> None:
        if isinstance(self.codec, str):
            object.__setattr__(self, "codec", check_value("codec", self.codec))

    @property
    def name(self) -> str:
        """``codec=..,batch=..,delay=..`` (``,batch_compression=on`` only when on; ``layout=..,``
        first when the matrix varies the layout)."""
        extra = ",batch_compression=on" if self.batch_compression == "on" else ""
        extra += f",consume={self.consume}" if self.consume != "pull" else ""
        prefix = f"layout={self.layout}," if self.layout is not None else ""
        return f"{prefix}codec={self.codec.spec},batch={self.batch},delay={self.delay}{extra}"

    def batch_msgs_for(self, topic_batch_msgs: int) -> int:
        """Messages per batch on a topic whose profile says ``topic_batch_msgs``."""
        return topic_batch_msgs if self.batch == BATCH_PROFILE else int(self.batch)

    def as_dict(self) -> dict:
        out = {"codec": self.codec.spec, "batch": self.batch, "delay": self.delay,
               "batch_compression": self.batch_compression}
        if self.layout is not None:
            out["layout"] = self.layout
        if self.consume != "pull":
            out["consume"] = self.consume
        return out


def check_value(axis: str, value: str) -> str | Codec:
    """The canonical value of ``value`` on ``axis``: the parsed ``Codec`` on the codec axis (the one
    place a run parses ``--codec``), canonical text on the others; UserError naming the axis and
    value otherwise."""
    value = value.strip()
    if axis == "codec":
        try:
            return parse_codec(value)
        except UserError as exc:
            raise UserError(f"codec {value!r}: {exc}") from None
    if axis == "batch":
        if value == BATCH_PROFILE:
            return value
        if not value.isdigit() or not 1 <= int(value) <= BATCH_MSGS_MAX:
            raise UserError(f"batch {value!r} must be 'profile' or an integer 1..{BATCH_MSGS_MAX}")
        return str(int(value))
    if axis == "layout":
        if not value or any(ch in value for ch in ",;="):
            raise UserError(f"layout {value!r} must be a layout name or a .toml file")
        return value  # whether it exists is checked where layouts are loaded (before anything starts)
    if axis == "consume":
        if value not in CONSUME_VALUES:
            raise UserError(f"consume {value!r} must be 'pull' or 'pop'")
        return value
    if axis in ("delay", "batch_compression"):
        if value not in DELAY_VALUES:
            raise UserError(f"{axis} {value!r} must be 'on' or 'off'")
        return value
    raise UserError(f"unknown matrix axis {axis!r}; axes are {', '.join(AXES)}")


def parse_matrix(spec: str | None, base: CellSettings) -> list[CellSettings]:
    """The cells of ``spec`` (see the module docstring); ``[base]`` when there is no matrix."""
    if spec is None or not spec.strip():
        return [base]
    axes: dict[str, list[str]] = {}
    for part in spec.split(";"):
        if not part.strip():
            continue
        if "=" not in part:
            raise UserError(f"matrix part {part.strip()!r} must look like axis=value1,value2")
        axis, values_text = (text.strip() for text in part.split("=", 1))
        if axis not in AXES:
            raise UserError(f"unknown matrix axis {axis!r}; axes are {', '.join(AXES)}")
        if axis in axes:
            raise UserError(f"matrix axis {axis!r} is given twice")
        values = [check_value(axis, v) for v in values_text.split(",") if v.strip()]
        if not values:
            raise UserError(f"matrix axis {axis!r} has no values")
        if len(set(values)) != len(values):
            raise UserError(f"matrix axis {axis!r} repeats a value: {values_text.strip()}")
        axes[axis] = values
    if not axes:
        raise UserError(f"matrix {spec!r} names no axis")
    names = list(axes)
    cells = []
    for combo in itertools.product(*(axes[n] for n in names)):
        cells.append(replace(base, **dict(zip(names, combo))))
    return cells
