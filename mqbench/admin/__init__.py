"""Admin of a RocketMQ-compatible cluster over the remoting protocol, with mqadmin's request codes
(the client side of ``mqbench admin``; works on the reference cluster and on real RocketMQ):

* ``calls``: the requests (one-shot helpers and ``AdminSession``);
* ``cluster``: brokers, broker groups and replicas from the name server and runtime info;
* ``topics``: topic list, create and update on every master;
* ``groups``: a consumer group's offsets and lag per queue.
"""
