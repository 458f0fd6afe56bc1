"""Faust's Kafka transport with a shorter fetch wait.

Faust builds its consumer with ``fetch_max_wait_ms=1500``, hard-coded. aiokafka leaves a
partition that still has buffered records out of the next fetch request, and the broker
holds that request until new data arrives on the partitions it *does* name, or 1.5 s
pass. So a record produced to such a partition (llm.results right after a reply, say)
can wait 1.5 s before it is fetched: with an instant LLM each turn of a chat took ~1.6 s
per hop. A short wait (``WABOT_CONSUMER_FETCH_MAX_WAIT_MS``) costs a few idle fetches a
second and removes that stall.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka


class TunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher.
        consumer._fetch_max_wait_ms = getattr(self.app, "settings").consumer_fetch_max_wait_ms  # noqa: B009
        return consumer


class TunedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> TunedConsumerThread:
        return TunedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TunedTransport(faust_aiokafka.Transport):
    Consumer = TunedConsumer
