"""Delayed close of an unpaid order: publish `order_create` when an order is made.

The config registers `order_create -> closeOrder` with a delay (2 s in the tests, e.g. 30m in a shop), so
closeOrder runs that long after the publish and closes the order if it is still unpaid by then.
The config comes from $EBATS_CONFIG (default /etc/ebats/ebats.yaml).
"""
import ebats

with ebats.Publisher() as publisher:
    event_id = publisher.publish("order_create", {"order_id": "FB138020392193312"}, trace="checkout-1")
print("order_create published:", event_id)
