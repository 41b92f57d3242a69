"""A django-q2 broker that is down: every enqueue raises, as a broker that cannot be reached."""

from __future__ import annotations

from django_q.brokers import Broker
from django_q.brokers.orm import ORM


class BrokerDown(ConnectionError):
    pass


class DownBroker(ORM):
    def enqueue(self, task):  # type: ignore[no-untyped-def]
        raise BrokerDown("broker unreachable (test)")


class OpaqueBroker(Broker):
    """A broker whose queue cannot be read from outside (as SQS or IronMQ): it keeps its
    messages in OrmQ through an inner ORM broker but is not one."""

    def __init__(self, list_key: str | None = None) -> None:
        self.inner = ORM(list_key=list_key)
        super().__init__(list_key=list_key)

    def enqueue(self, task):  # type: ignore[no-untyped-def]
        return self.inner.enqueue(task)

    def dequeue(self):  # type: ignore[no-untyped-def]
        return self.inner.dequeue()

    def queue_size(self) -> int:
        return self.inner.queue_size()
