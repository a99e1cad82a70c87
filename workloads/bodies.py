"""Body models: realistic message bodies for the built-in profiles (orders, notifications, iot).

Compression figures from random bytes are worthless, and so are figures from one record repeated.
These models produce what the users' topics carry: compact JSON as Java services emit it (fastjson
style, no spaces), with repeating field names and realistic value distributions:

* ``orders``: order events with Zipf-popular SKUs from a catalogue, log-normal prices, 1–6 line
  items, masked phone numbers and addresses from a weighted city list, status transitions.
* ``notifications``: push/SMS/e-mail notifications rendered from a few dozen templates in English and
  Chinese, with user names, amounts, tracking numbers and deep links filled in.
* ``iot``: telemetry from a fleet of devices: random-walk sensor readings per device, battery drain,
  signal strength, GPS drift around a site, occasional alarm events.

* ``notifications_transactional`` / ``notifications_marketing``: the same rendering split by
  purpose (instant notices; promotions, cart reminders, expiring coupons, new arrivals).
* ``order_timeout``: the payment-timeout check an order service schedules 30 minutes ahead with
  each new order (small bodies, delayed delivery).

Contract: ``generate_bodies(profile, count, rng)`` returns ``count`` bodies (``bytes``) and depends
only on the state of ``rng``, so a seed reproduces the same payloads bit for bit.
``iter_bodies(model, rng, **options)`` is the streaming form the profile generator uses: an endless,
lazy stream with the model's options (``BODY_STREAMS`` lists them with their bounds).
"""
from __future__ import annotations

import functools
import itertools
import json
import random
import string
from dataclasses import dataclass
from typing import Callable, Iterator

from mqbench.workloads.distributions import weighted_picker

_EPOCH_MS = 1_764_000_000_000  # 2025-11-24; payload timestamps start here and move forward

# --- shared vocabularies ----------------------------------------------------------------------

_CITIES = [  # (province, city, district, postcode prefix, weight)
    ("Zhejiang", "Hangzhou", "Xihu", "3100", 9), ("Guangdong", "Shenzhen", "Nanshan", "5180", 10),
    ("Beijing", "Beijing", "Haidian", "1000", 12), ("Shanghai", "Shanghai", "Pudong", "2001", 12),
    ("Sichuan", "Chengdu", "Wuhou", "6100", 7), ("Hubei", "Wuhan", "Hongshan", "4300", 6),
    ("Jiangsu", "Nanjing", "Gulou", "2100", 6), ("Shaanxi", "Xi'an", "Yanta", "7100", 4),
    ("Fujian", "Xiamen", "Siming", "3610", 3), ("Shandong", "Qingdao", "Laoshan", "2660", 4),
    ("Hunan", "Changsha", "Yuelu", "4100", 4), ("Chongqing", "Chongqing", "Yubei", "4011", 5),
]
_STREETS = ["Wensan Rd", "Keyuan Rd", "Zhongguancun St", "Century Ave", "Tianfu 3rd St", "Guanggu Ave",
            "Zhongshan N Rd", "Xiaozhai E Rd", "Huandao Rd", "Haier Rd", "Lushan Rd", "Jinkai Ave"]
_FIRST = ["Wei", "Fang", "Na", "Min", "Jing", "Li", "Qiang", "Lei", "Jun", "Yang", "Yan", "Jie", "Tao", "Ming",
          "Chao", "Xiu", "Xia", "Hui", "Ping", "Gang", "Emma", "Liam", "Olivia", "Noah", "Ava", "Lucas"]
_LAST = ["Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Xu", "Sun", "Ma", "Zhu",
         "Hu", "Guo", "He", "Lin", "Smith", "Garcia", "Mueller", "Tanaka"]

_PRODUCT_NOUNS = ["T-Shirt", "Hoodie", "Sneakers", "Backpack", "Water Bottle", "Phone Case", "USB-C Cable",
                  "Earbuds", "Desk Lamp", "Coffee Beans", "Green Tea", "Face Cream", "Shampoo", "Notebook",
                  "Mechanical Keyboard", "Mouse", "Power Bank", "Rice Cooker", "Yoga Mat", "Socks 5-Pack"]
_PRODUCT_ADJ = ["Classic", "Pro", "Lite", "Organic", "Premium", "Slim", "Wireless", "Kids", "Sport", "Eco"]
_COLORS = ["BLK", "WHT", "RED", "BLU", "GRN", "GRY", "NAV", "PNK"]
_SIZES = ["XS", "S", "M", "L", "XL", "XXL", "OS"]
_PAYMENTS = [("ALIPAY", 46), ("WECHAT_PAY", 38), ("UNIONPAY", 9), ("CREDIT_CARD", 5), ("COD", 2)]
_ORDER_STATUS = [("CREATED", 40), ("PAID", 30), ("SHIPPED", 15), ("DELIVERED", 10), ("CANCELLED", 4), ("REFUNDED", 1)]
_SOURCES = [("ios", 38), ("android", 44), ("mini_program", 12), ("web", 6)]


def _weighted(rng: random.Random, pairs):
    return rng.choices([p[0] for p in pairs], weights=[p[-1] for p in pairs])[0]


def _zipf_index(rng: random.Random, n: int, s: float = 1.1) -> int:
    """An index in [0, n) drawn with Zipf-like popularity (rank^-s), by inverse transform."""
    # Continuous approximation of the Zipf CDF; good enough for popularity skew.
    u = rng.random()
    if s == 1.0:
        return min(n - 1, int(n ** u) - 1)
    a = 1.0 - s
    value = ((n ** a - 1.0) * u + 1.0) ** (1.0 / a)
    return min(n - 1, max(0, int(value) - 1))


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('3456789')}{rng.randint(0, 9)}****{rng.randint(0, 9999):04d}"


def _name(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


# --- orders ------------------------------------------------------------------------------------


def _catalogue(rng: random.Random, size: int = 3000):
    items = []
    for index in range(size):
        noun = rng.choice(_PRODUCT_NOUNS)
        adjective = rng.choice(_PRODUCT_ADJ)
        sku = f"SKU-{10000 + index}-{rng.choice(_COLORS)}-{rng.choice(_SIZES)}"
        price = round(min(9999.0, rng.lognormvariate(4.0, 0.9)), 2)
        items.append((sku, f"{adjective} {noun}", price, rng.randint(1, 400)))  # 400 merchants
    return items


def _picker(pairs):
    """``_weighted(rng, pairs)`` as a function of ``rng``: the same draw at a fraction of the cost
    (``distributions.weighted_picker``)."""
    return weighted_picker([p[0] for p in pairs], [p[-1] for p in pairs])


_PICK_CITY = _picker([(c, c[-1]) for c in _CITIES])
_PICK_ORDER_STATUS = _picker(_ORDER_STATUS)
_PICK_SOURCE = _picker(_SOURCES)
_PICK_PAYMENT = _picker(_PAYMENTS)
_BUYER_LEVELS = ["NORMAL", "NORMAL", "NORMAL", "VIP", "SVIP"]
_DISCOUNTS = [0, 0, 0, 0.05, 0.1, 0.2]
try:
    import orjson as _orjson
except ImportError:      # a plain install without it: the standard library's encoder, the same bytes
    _orjson = None
if _orjson is not None:
    # orjson writes what the compact stdlib encoders below write for the values these models draw
    # (keys in insertion order, strings as UTF-8 with the same escapes, ints, floats in repr's
    # shortest form: money rounded to cents, below 1e16), at a sixth of the cost (15 -> 2.5 µs per
    # order body). The timeout checks hold ASCII text only, so ensure_ascii changes nothing there.
    # tests/workloads/test_bodies_pinned.py pins the bytes and compares with the stdlib encoders.
    _encode_compact = _encode_ascii = _orjson.dumps
else:
    _compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    _ascii = json.JSONEncoder(separators=(",", ":")).encode

    def _encode_compact(value) -> bytes:
        return _compact(value).encode()

    def _encode_ascii(value) -> bytes:
        return _ascii(value).encode()


def iter_orders(rng: random.Random, catalogue_skus: int = 3000) -> Iterator[bytes]:
    """Order events, endlessly; the catalogue of ``catalogue_skus`` products is drawn first."""
    return (body for body, _fields in _iter_orders_fields(rng, catalogue_skus))


def _iter_orders_fields(rng: random.Random, catalogue_skus: int = 3000) -> Iterator[tuple[bytes, dict]]:
    """``iter_orders`` with each body's fields (what ``json.loads`` of the body gives).

    The load generator draws one per message, so the draws are written out: ``below(n)`` is what
    ``rng.choice``/``rng.randint`` draw (``Random._randbelow``), in the same order, so a seed gives
    the same bodies bit for bit as the plain calls (a golden test pins them)."""
    catalogue = _catalogue(rng, catalogue_skus)
    n_catalogue = len(catalogue)
    now_ms = _EPOCH_MS
    below, expovariate = rng._randbelow, rng.expovariate
    n_streets, n_first, n_last = len(_STREETS), len(_FIRST), len(_LAST)
    while True:
        now_ms += int(expovariate(1 / 40.0))
        lines = []
        for _ in range(min(6, 1 + int(expovariate(1.2)))):
            sku, title, price, merchant = catalogue[_zipf_index(rng, n_catalogue)]
            lines.append({"merchantId": merchant, "qty": min(20, 1 + int(expovariate(1.5))),
                          "sku": sku, "title": title, "unitPrice": price})
        total = round(sum(line["qty"] * line["unitPrice"] for line in lines), 2)
        discount = round(total * _DISCOUNTS[below(6)], 2)
        province, city, district, post, _w = _PICK_CITY(rng)
        status = _PICK_ORDER_STATUS(rng)
        buyer = {"level": _BUYER_LEVELS[below(5)], "userId": 10_000_000 + below(90_000_000)}
        coupon = f"CPN{100000 + below(900000)}" if discount else None
        order_id = f"{now_ms // 1000}{below(1000000):06d}{below(100):02d}"
        pay_amount = round(total - discount + (0 if total > 99 else 8.0), 2)
        payment = {"channel": _PICK_SOURCE(rng).upper(), "method": _PICK_PAYMENT(rng)}
        if status != "CREATED":
            payment["tradeNo"] = f"{10**15 + below(10**16 - 10**15)}"
        address = (f"{1 + below(999)} {_STREETS[below(n_streets)]}, Bldg {1 + below(30)}, "
                   f"Room {101 + below(2708)}")
        name = f"{_FIRST[below(n_first)]} {_LAST[below(n_last)]}"
        phone = f"1{'3456789'[below(7)]}{below(10)}****{below(10000):04d}"
        order = {
            "buyer": buyer,
            "coupon": coupon,
            "createTime": now_ms,
            "currency": "CNY",
            "discountAmount": discount,
            "items": lines,
            "orderId": order_id,
            "payAmount": pay_amount,
            "payment": payment,
            "receiver": {"address": address, "city": city, "district": district, "name": name, "phone": phone,
                         "postcode": f"{post}{10 + below(90)}", "province": province},
            "shippingFee": 0 if total > 99 else 8.0,
            "source": _PICK_SOURCE(rng),
            "status": status,
            "totalAmount": total,
            "version": 1 + below(4),
        }
        if coupon is None:
            del order["coupon"]
        yield _encode_compact(order), order


def _drop_none(value):
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


# --- notifications -----------------------------------------------------------------------------

_TEMPLATES = [  # (template id, channel, locale, title, text, weight)
    ("ORDER_SHIPPED", "push", "en", "Your order is on its way",
     "Hi {name}, your order {order} has shipped with {carrier}. Tracking number {tracking}. "
     "Estimated delivery: {date}.", 14),
    ("ORDER_SHIPPED", "push", "zh", "您的订单已发货",
     "亲爱的{name}，您的订单{order}已由{carrier}发出，运单号{tracking}，预计{date}送达。", 18),
    ("PAYMENT_OK", "push", "en", "Payment received",
     "We received your payment of CNY {amount} for order {order}. Thank you for shopping with us!", 10),
    ("PAYMENT_OK", "sms", "zh", "支付成功", "【优选商城】您已成功支付{amount}元，订单号{order}。如非本人操作请致电客服。", 12),
    ("VERIFY_CODE", "sms", "zh", "验证码", "【优选商城】您的验证码是{code}，5分钟内有效。请勿泄露给他人。", 16),
    ("VERIFY_CODE", "sms", "en", "Verification code",
     "Your verification code is {code}. It expires in 5 minutes. Do not share it with anyone.", 6),
    ("LOGIN_ALERT", "email", "en", "New sign-in to your account",
     "Hello {name},\nWe noticed a new sign-in to your account from {device} in {city} at {time}. "
     "If this was you, you can ignore this message. Otherwise, reset your password at {link}.", 4),
    ("PROMO", "push", "zh", "限时优惠", "{name}，您关注的{product}降价啦！现价{amount}元，限时{hours}小时，点击查看>>", 12),
    ("PROMO", "push", "en", "Price drop on {product}",
     "{name}, the {product} on your wish list is now CNY {amount}. Offer ends in {hours} hours.", 5),
    ("DELIVERED", "push", "zh", "订单已签收", "您的订单{order}已签收，签收人：{name}。期待您的评价！", 8),
    ("REFUND", "email", "en", "Your refund has been processed",
     "Hello {name},\nA refund of CNY {amount} for order {order} has been issued to your original payment "
     "method. It may take 3-5 business days to appear.\nOrder details: {link}", 3),
]
# Marketing pushes: promotions, abandoned carts, expiring coupons, new arrivals (used by the
# notifications_marketing model only, so the original notifications model is unchanged).
_MARKETING_TEMPLATES = [t for t in _TEMPLATES if t[0] == "PROMO"] + [
    ("CART_REMINDER", "push", "zh", "购物车提醒", "{name}，您购物车里的{product}库存紧张，现价{amount}元，快来带走它吧~", 9),
    ("CART_REMINDER", "push", "en", "Still thinking it over?",
     "{name}, the {product} in your cart is selling fast. Complete your order now for CNY {amount}.", 4),
    ("COUPON_EXPIRING", "push", "zh", "优惠券即将过期", "您有一张满{threshold}减{discount}的优惠券将于{hours}小时后过期，立即使用>>", 8),
    ("COUPON_EXPIRING", "email", "en", "Your coupon expires soon",
     "Hello {name},\nYour CNY {discount} off CNY {threshold} coupon {coupon} expires in {hours} hours.\n"
     "Shop now: {link}", 3),
    ("NEW_ARRIVAL", "push", "zh", "上新啦", "您关注的店铺上新了{product}，首发价{amount}元，前100名加赠好礼！", 6),
]
_TRANSACTIONAL_TEMPLATES = [t for t in _TEMPLATES if t[0] != "PROMO"]
_CARRIERS = ["SF Express", "JD Logistics", "ZTO Express", "YTO Express", "China Post EMS", "STO Express"]
_DEVICES = ["iPhone 15", "Pixel 8", "Xiaomi 14", "Huawei Mate 60", "Chrome on Windows", "Safari on macOS"]


def iter_notifications(rng: random.Random, templates: list | None = None) -> Iterator[bytes]:
    """Rendered notifications from ``templates`` (default: all transactional ones plus promotions), endlessly."""
    marketing = templates is _MARKETING_TEMPLATES
    choices = [(t, t[-1]) for t in (templates or _TEMPLATES)]
    now_ms = _EPOCH_MS
    while True:
        now_ms += int(rng.expovariate(1 / 15.0))
        tid, channel, locale, title, text, _w = _weighted(rng, choices)
        order = f"{now_ms // 1000}{rng.randint(0, 999999):06d}"
        product = f"{rng.choice(_PRODUCT_ADJ)} {rng.choice(_PRODUCT_NOUNS)}"
        values = {
            "name": _name(rng), "order": order, "carrier": rng.choice(_CARRIERS),
            "tracking": f"{rng.choice(['SF', 'JD', 'YT', 'ZT'])}{rng.randint(10**11, 10**12 - 1)}",
            "date": f"2025-11-{rng.randint(25, 30)}", "amount": f"{rng.lognormvariate(4.2, 0.8):.2f}",
            "code": f"{rng.randint(0, 999999):06d}", "device": rng.choice(_DEVICES), "city": rng.choice(_CITIES)[1],
            "time": f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}", "product": product,
            "hours": rng.choice([2, 6, 12, 24, 48]),
            "link": f"https://m.example-mall.cn/o/{order}?utm_source={channel}&utm_campaign={tid.lower()}",
        }
        if marketing:  # drawn after the shared values, so the other template sets are unaffected
            threshold = rng.choice([99, 199, 299, 499])
            values.update(threshold=threshold, discount=rng.choice([10, 20, 30, 50]) * (1 + threshold // 300),
                          coupon=f"CPN{rng.randint(100000, 999999)}")
        message = {
            "bizType": tid, "channel": channel,
            "content": text.format(**values), "createTime": now_ms,
            "deepLink": f"mall://order/detail?orderId={order}" if channel == "push" else None,
            "locale": "zh_CN" if locale == "zh" else "en_US",
            "msgId": "".join(rng.choices(string.hexdigits[:16].upper(), k=32)),
            "priority": "HIGH" if tid in ("VERIFY_CODE", "LOGIN_ALERT") else "NORMAL",
            "receiver": _phone(rng) if channel == "sms" else rng.randint(10_000_000, 99_999_999),
            "templateId": f"{tid}_{locale.upper()}_V{rng.randint(1, 3)}",
            "title": title.format(**values),
            "ttlSeconds": 300 if tid == "VERIFY_CODE" else 86400,
        }
        yield json.dumps(_drop_none(message), separators=(",", ":"), ensure_ascii=False).encode()


# --- iot -----------------------------------------------------------------------------------------

_DEVICE_MODELS = [("TH-200", "thermo-hygrometer"), ("PM-10", "air-quality"), ("SM-3P", "smart-meter"),
                  ("GW-LTE", "gateway"), ("CT-8", "cold-chain-tracker")]


def iter_iot(rng: random.Random, devices: int = 5000, readings_per_message: int = 1) -> Iterator[bytes]:
    """Device telemetry from a fleet of ``devices`` devices, endlessly; ``readings_per_message`` > 1
    packs that many readings into one gateway upload."""
    fleet = []
    for _ in range(devices):
        model, kind = rng.choice(_DEVICE_MODELS)
        fleet.append({
            "id": f"{model.lower()}-{rng.randint(0, 0xFFFFFF):06x}", "model": model, "kind": kind,
            "fw": f"{rng.randint(1, 3)}.{rng.randint(0, 9)}.{rng.randint(0, 40)}",
            "temp": rng.gauss(22.0, 6.0), "hum": rng.uniform(30, 80), "bat": rng.uniform(40, 100),
            "lat": 30.25 + rng.uniform(-0.3, 0.3), "lon": 120.15 + rng.uniform(-0.3, 0.3),
            "seq": rng.randint(0, 100000), "site": f"site-{rng.randint(1, 60):03d}",
        })
    now_ms = _EPOCH_MS
    while True:
        now_ms += int(rng.expovariate(1 / 2.0))
        if readings_per_message == 1:
            yield json.dumps(_iot_event(rng, fleet, now_ms), separators=(",", ":")).encode()
            continue
        # A gateway uploads several readings in one message (bigger bodies, shared field names:
        # this is where batching inside the body pays off for compression).
        readings = [_iot_event(rng, fleet, now_ms + index * 5) for index in range(readings_per_message)]
        upload = {"gatewayId": f"gw-{readings[0]['site']}", "readings": readings,
                  "sentAt": now_ms + 5 * readings_per_message, "type": "batch_upload"}
        yield json.dumps(upload, separators=(",", ":")).encode()


def _iot_event(rng: random.Random, fleet: list[dict], now_ms: int) -> dict:
    device = fleet[_zipf_index(rng, len(fleet), 0.6)]
    device["seq"] += 1
    device["temp"] += rng.gauss(0, 0.15)
    device["hum"] = min(100.0, max(0.0, device["hum"] + rng.gauss(0, 0.4)))
    device["bat"] = max(0.0, device["bat"] - rng.random() * 0.01)
    metrics = {"battery": round(device["bat"], 1), "rssi": rng.randint(-110, -55)}
    if device["kind"] in ("thermo-hygrometer", "cold-chain-tracker"):
        metrics.update(temperature=round(device["temp"], 2), humidity=round(device["hum"], 1))
    elif device["kind"] == "air-quality":
        metrics.update(pm25=max(0, int(rng.lognormvariate(3.3, 0.6))), pm10=max(0, int(rng.lognormvariate(3.8, 0.6))),
                       co2=int(rng.gauss(650, 120)))
    elif device["kind"] == "smart-meter":
        metrics.update(voltage=round(rng.gauss(230.0, 1.5), 1), current=round(abs(rng.gauss(4.0, 2.0)), 2),
                       energyKwh=round(device["seq"] * 0.013, 3))
    else:
        metrics.update(uplinkKbps=int(rng.lognormvariate(5, 1)), clients=rng.randint(0, 64))
    event = {"deviceId": device["id"], "fw": device["fw"], "metrics": metrics, "model": device["model"],
             "seq": device["seq"], "site": device["site"], "ts": now_ms, "type": "telemetry"}
    if device["kind"] == "cold-chain-tracker":
        device["lat"] += rng.gauss(0, 0.0005)
        device["lon"] += rng.gauss(0, 0.0005)
        event["gps"] = {"lat": round(device["lat"], 6), "lon": round(device["lon"], 6)}
    if rng.random() < 0.01:
        event["type"] = "alarm"
        event["alarm"] = {"code": rng.choice(["TEMP_HIGH", "BATTERY_LOW", "DOOR_OPEN", "OFFLINE_RECOVERED"]),
                          "level": rng.choice(["WARN", "CRITICAL"])}
    return event


# --- order payment timeouts -------------------------------------------------------------------


def iter_order_timeouts(rng: random.Random, timeout_ms: int = 1_800_000) -> Iterator[bytes]:
    """Payment-timeout checks (see ``_iter_order_timeouts_fields``)."""
    return (body for body, _fields in _iter_order_timeouts_fields(rng, timeout_ms))


def _iter_order_timeouts_fields(rng: random.Random, timeout_ms: int = 1_800_000) -> Iterator[tuple[bytes, dict]]:
    """Payment-timeout checks: sent with each new order, delivered ``timeout_ms`` later to close it if unpaid.

    Small bodies (about 200 bytes) whose ids and amounts vary and whose field names repeat.
    """
    now_ms = _EPOCH_MS
    below = rng._randbelow   # what rng.randint draws (see iter_orders)
    random_ = rng.random     # what rng.choices draws without weights: population[floor(random() * n)]
    hex_digits = string.hexdigits[:16].lower()
    while True:
        now_ms += int(rng.expovariate(1 / 40.0))
        check = {
            "action": "CLOSE_IF_UNPAID", "buyerId": 10_000_000 + below(90_000_000),
            "createTime": now_ms, "expireTime": now_ms + timeout_ms,
            "orderId": f"{now_ms // 1000}{below(1000000):06d}{below(100):02d}",
            "payAmount": round(min(99999.0, rng.lognormvariate(4.6, 1.0)), 2),
            "releaseStock": rng.random() < 0.97, "source": _PICK_SOURCE(rng), "traceId":
                "".join([hex_digits[int(random_() * 16.0)] for _ in range(16)]),  # rng.choices(hex_digits, k=16)
        }
        yield _encode_ascii(check), check


# --- registry ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BodyStream:
    """A streaming body model and the integer options a profile may set on it: name -> (default, min, max)."""

    factory: Callable[..., Iterator[bytes]]
    options: dict[str, tuple[int, int, int]]
    fields: tuple[str, ...]  # top-level JSON fields of its bodies: what keys, tags and properties may come from
    summary: str


_NOTIFICATION_FIELDS = ("bizType", "channel", "content", "createTime", "deepLink", "locale", "msgId", "priority",
                        "receiver", "templateId", "title", "ttlSeconds")

BODY_STREAMS: dict[str, BodyStream] = {
    "orders": BodyStream(iter_orders, {"catalogue_skus": (3000, 1, 200_000)},
                         ("buyer", "coupon", "createTime", "currency", "discountAmount", "items", "orderId",
                          "payAmount", "payment", "receiver", "shippingFee", "source", "status", "totalAmount",
                          "version"),
                         "order events: 1-6 Zipf-popular SKUs, prices, addresses, status"),
    "order_timeout": BodyStream(iter_order_timeouts, {"timeout_ms": (1_800_000, 1000, 259_200_000)},
                                ("action", "buyerId", "createTime", "expireTime", "orderId", "payAmount",
                                 "releaseStock", "source", "traceId"), "payment-timeout checks for new orders"),
    "notifications": BodyStream(iter_notifications, {}, _NOTIFICATION_FIELDS,
                                "push/SMS/e-mail notifications from templates (en, zh)"),
    "notifications_transactional": BodyStream(functools.partial(iter_notifications, templates=_TRANSACTIONAL_TEMPLATES),
                                              {}, _NOTIFICATION_FIELDS,
                                              "verification codes, payment, shipping, sign-in and refund notices"),
    "notifications_marketing": BodyStream(functools.partial(iter_notifications, templates=_MARKETING_TEMPLATES),
                                          {}, _NOTIFICATION_FIELDS,
                                          "promotions, cart reminders, expiring coupons, new arrivals"),
    "iot": BodyStream(iter_iot, {"devices": (5000, 1, 200_000), "readings_per_message": (1, 1, 1000)},
                      ("alarm", "deviceId", "fw", "gps", "metrics", "model", "seq", "site", "ts", "type",
                       "gatewayId", "readings", "sentAt"),
                      "device telemetry: random-walk sensors, battery, GPS, alarms"),
}


# Models that can hand out each body's parsed fields with it (the generator needs them for keys,
# tags and properties taken from the body; parsing the body it just encoded cost ~10 µs a message).
_FIELD_STREAMS: dict[str, Callable[..., Iterator[tuple[bytes, dict]]]] = {
    "orders": _iter_orders_fields, "order_timeout": _iter_order_timeouts_fields}


def iter_bodies_with_fields(model: str, rng: random.Random, **options: int) -> Iterator[tuple[bytes, dict]]:
    """``iter_bodies`` as ``(body, fields)`` pairs: ``fields`` equals ``json.loads(body)`` (the
    same draws, so the same bodies as ``iter_bodies`` with the same ``rng`` state)."""
    fields_stream = _FIELD_STREAMS.get(model)
    if fields_stream is not None:
        return fields_stream(rng, **options)
    return ((body, json.loads(body)) for body in iter_bodies(model, rng, **options))


def iter_bodies(model: str, rng: random.Random, **options: int) -> Iterator[bytes]:
    """An endless stream of bodies from ``model`` with ``options``; depends only on ``rng``'s state.

    Raises KeyError for an unknown model and TypeError for an unknown option (callers validate first).
    """
    return BODY_STREAMS[model].factory(rng, **options)


def _orders(rng: random.Random, count: int) -> list[bytes]:
    return list(itertools.islice(iter_orders(rng), count))


def _notifications(rng: random.Random, count: int) -> list[bytes]:
    return list(itertools.islice(iter_notifications(rng), count))


def _iot(rng: random.Random, count: int) -> list[bytes]:
    # The fleet grows with the sample so that small samples still repeat devices.
    return list(itertools.islice(iter_iot(rng, max(50, min(5000, count // 8))), count))


BODY_MODELS: dict[str, Callable[[random.Random, int], list[bytes]]] = {
    "orders": _orders,
    "notifications": _notifications,
    "iot": _iot,
}


def generate_bodies(profile: str, count: int, rng: random.Random) -> list[bytes]:
    """``count`` realistic bodies for built-in ``profile``; raises KeyError for an unknown one."""
    return BODY_MODELS[profile](rng, count)
