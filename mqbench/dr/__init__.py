"""Machine-room disaster recovery: scheme layouts' network views, drills, measurements and the
cross-cluster replicator of scheme C (``replicator.Replicator`` with its ``offsets.OffsetMap``)."""
