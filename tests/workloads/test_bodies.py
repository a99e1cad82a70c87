"""Body models: the list API is unchanged bit for bit, the streaming API and its options behave."""
import hashlib
import itertools
import json
import random

import pytest

from mqbench.workloads.bodies import BODY_STREAMS, generate_bodies, iter_bodies

# Digests of generate_bodies(model, n, Random(7)) taken before the models became streams: codecs
# bench figures from earlier runs stay comparable only if these never change.
GOLDEN = {("orders", 10): "3e417c165a983064", ("orders", 500): "447779da52fcee41",
          ("notifications", 10): "cfdece9fbd956e03", ("notifications", 500): "f2539cbe88baeb99",
          ("iot", 10): "98a044ab704205eb", ("iot", 500): "6a737193689495d5"}


@pytest.mark.parametrize("model,count", sorted(GOLDEN))
def test_generate_bodies_is_unchanged(model, count):
    bodies = generate_bodies(model, count, random.Random(7))
    assert len(bodies) == count
    assert hashlib.sha256(b"".join(b + b"|" for b in bodies)).hexdigest()[:16] == GOLDEN[(model, count)]


@pytest.mark.parametrize("model", sorted(BODY_STREAMS))
def test_streams_are_json_deterministic_and_carry_their_natural_fields(model):
    first = list(itertools.islice(iter_bodies(model, random.Random(3)), 200))
    again = list(itertools.islice(iter_bodies(model, random.Random(3)), 200))
    other = list(itertools.islice(iter_bodies(model, random.Random(4)), 200))
    assert first == again and first != other
    fields = set(BODY_STREAMS[model].fields)
    for body in first:
        assert set(json.loads(body)) <= fields


def test_iot_gateway_uploads_pack_readings():
    single = list(itertools.islice(iter_bodies("iot", random.Random(1), devices=100), 50))
    packed = list(itertools.islice(iter_bodies("iot", random.Random(1), devices=100, readings_per_message=10), 50))
    upload = json.loads(packed[0])
    assert upload["type"] == "batch_upload" and len(upload["readings"]) == 10
    assert upload["gatewayId"].startswith("gw-site-")
    assert sum(map(len, packed)) > 8 * sum(map(len, single))


def test_order_timeout_expires_after_the_timeout():
    for body in itertools.islice(iter_bodies("order_timeout", random.Random(2), timeout_ms=60_000), 20):
        check = json.loads(body)
        assert check["expireTime"] - check["createTime"] == 60_000
        assert check["action"] == "CLOSE_IF_UNPAID"


def test_notification_purposes_do_not_mix():
    def biz_types(model):
        return {json.loads(b)["bizType"] for b in itertools.islice(iter_bodies(model, random.Random(1)), 400)}

    marketing, transactional = biz_types("notifications_marketing"), biz_types("notifications_transactional")
    assert marketing == {"PROMO", "CART_REMINDER", "COUPON_EXPIRING", "NEW_ARRIVAL"}
    assert "VERIFY_CODE" in transactional and not marketing & transactional
    for body in itertools.islice(iter_bodies("notifications_marketing", random.Random(2)), 200):
        assert "{" not in json.loads(body)["content"]  # every placeholder was filled
