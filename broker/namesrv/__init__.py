"""The name server: brokers register their topics and roles, clients ask for topic routes.

``routes`` holds the route logic (sans-I/O), ``server`` the remoting adapter, ``__main__`` the
process (``python -m mqbench.broker.namesrv --listen 127.0.0.1:9876``).
"""
