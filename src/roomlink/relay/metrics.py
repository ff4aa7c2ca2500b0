"""Prometheus counters: what a dashboard needs to see that nothing is lost."""

from prometheus_client import Counter

INGESTED = Counter("roomlink_messages_ingested", "Messages recorded in every store of their pipe")
DELIVERED = Counter("roomlink_deliveries", "Message copies posted to a room", ["connector"])
FAILED = Counter(
    "roomlink_delivery_failures", "Copies given up after the retry budget", ["connector"]
)
RETRIES = Counter("roomlink_delivery_retries", "Failed send attempts that will be retried",
                  ["connector"])
