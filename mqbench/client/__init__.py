"""mqbench's own pure-Python RocketMQ remoting client, the benchmark harness's driver.

Works against any name server (mqbench's or a real RocketMQ 4.x/5.x one)::

    async with Producer("127.0.0.1:9876", "PID_bench") as producer:
        result = await producer.send(OutgoingMessage("Orders", b"...", tags="paid", keys=["o-1"]))
    consumer = Consumer("127.0.0.1:9876", "GID_bench", consume_from="first")
    consumer.subscribe("Orders", "paid || refunded")
    async with consumer:
        for msg in await consumer.receive(32, timeout_ms=1000):
            latency_ms = now_ms() - msg.born_timestamp_ms
    pop = PopConsumer("127.0.0.1:9876", "GID_pop", invisible_time_ms=30_000)   # RocketMQ 5's POP
    pop.subscribe("Orders")
    async with pop:
        msgs = await pop.receive(32, timeout_ms=1000)
        await pop.ack(msgs)                   # not acked: back after the invisible time
"""
from mqbench.client.connections import ClientError
from mqbench.client.consumer import Consumer
from mqbench.client.messages import OutgoingMessage, ReceivedMessage
from mqbench.client.pop_consumer import PopConsumer
from mqbench.client.producer import Producer, SendResult
from mqbench.client.routes import MessageQueue, TopicRoute, allocate_averagely

__all__ = ["Producer", "Consumer", "PopConsumer", "OutgoingMessage", "ReceivedMessage", "SendResult", "MessageQueue", "TopicRoute",
           "allocate_averagely", "ClientError"]
