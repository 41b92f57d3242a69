"""A django-q2 broker that is down: every enqueue raises, as a broker that cannot be reached."""

from __future__ import annotations

from django_q.brokers.orm import ORM


class BrokerDown(ConnectionError):
    pass


class DownBroker(ORM):
    def enqueue(self, task):  # type: ignore[no-untyped-def]
        raise BrokerDown("broker unreachable (test)")
