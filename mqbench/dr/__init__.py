"""Machine-room disaster recovery: scheme layouts' network views, drills, measurements and the
cross-cluster replicator of scheme C (``replicator.Replicator`` with its ``offsets.OffsetMap``), and
``netem``: the inter-room network emulation the drills route through (a sans-I/O link model and a
userspace TCP delay proxy; the layout's ``LinkSettings`` are ``mqbench.broker.layout_links``)."""
