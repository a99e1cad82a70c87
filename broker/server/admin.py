"""Moved to ``mqbench.admin.calls`` (admin requests are client code); kept importable for callers
that have not moved yet."""
from mqbench.admin.calls import AdminError, create_topic, query_runtime_info  # noqa: F401
