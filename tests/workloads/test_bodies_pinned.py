"""The body models draw the same bodies, bit for bit, as the plain ``random`` calls they were
written with: the load generator's faster draws (accumulated weights, ``_randbelow``) must not
change what a seed means (a trace or a result names a seed, not bodies)."""
from __future__ import annotations

import hashlib
import itertools
import random

import pytest

from mqbench.workloads.bodies import iter_bodies

# sha256 of the first 400 bodies, from the model as written before the draws were inlined
PINNED = {
    ("orders", 300): "f6fe2efd11edf9304efe78f5e792ff031c72353bc02f3bd71d9d8f66e9aad94b",
    ("order_timeout", None): "14ae60641fa01f9bdfd480176e022b1be17b9296a1b95d6bdb77d5e69e064159",
}


@pytest.mark.parametrize("model, skus", list(PINNED))
def test_a_seed_draws_the_bodies_it_always_drew(model, skus):
    options = {"catalogue_skus": skus} if skus else {}
    bodies = itertools.islice(iter_bodies(model, random.Random(f"golden/{model}"), **options), 400)
    assert hashlib.sha256(b"".join(bodies)).hexdigest() == PINNED[(model, skus)]


@pytest.mark.parametrize("model", ["orders", "order_timeout"])
def test_the_fast_encoder_writes_what_the_stdlib_encoder_writes(model):
    """bodies.py encodes with orjson when installed; every body must equal ``json.dumps`` of its
    fields with the compact separators (non-ASCII as UTF-8 for orders, ASCII-only timeout checks)."""
    import json

    from mqbench.workloads import bodies

    fields_of = bodies._iter_orders_fields if model == "orders" else bodies._iter_order_timeouts_fields
    for seed in range(3):
        for body, fields in itertools.islice(fields_of(random.Random(f"equal/{seed}")), 3000):
            expected = json.dumps(fields, separators=(",", ":"), ensure_ascii=model != "orders").encode()
            assert body == expected
