"""Fixtures of the store-files tests (helpers live in store_files_helpers.py)."""
import pytest

from store_files_helpers import fast_dir  # noqa: F401  (a fixture used by several modules)


@pytest.fixture(params=["v4", "v5", "v4-dledger", "v5-dledger"])
def version(request):
    return request.param
