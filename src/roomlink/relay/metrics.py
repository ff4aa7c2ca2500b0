"""Prometheus counters: what a dashboard needs to see that nothing is lost."""

from prometheus_client import Counter

INGESTED = Counter("roomlink_messages_ingested", "Messages recorded in every store of their pipe")
DELIVERED = Counter("roomlink_deliveries", "Message copies posted to a room", ["connector"])
FAILED = Counter(
    "roomlink_delivery_failures", "Copies given up after the retry budget", ["connector"]
)
RETRIES = Counter("roomlink_delivery_retries", "Failed send attempts that will be retried",
                  ["connector"])
# federation: whole messages another roomlink instance handed in through a link
CROSSED = Counter("roomlink_link_received", "Messages recorded from a linked roomlink instance",
                  ["connector"])
REFUSED = Counter("roomlink_link_refused",
                  "Messages a linked roomlink instance sent that were refused", ["connector"])
HELD = Counter("roomlink_link_held",
               "Messages said here and held for the instance hosting their conversation",
               ["connector"])
