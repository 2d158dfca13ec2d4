"""A custom scheduler: create tasks directly, one per message of an upstream queue (Task::create).

The list below stands in for the upstream queue. On RabbitMQ, ebats-scheduler can consume such a queue
itself (`sources` in docs/CONFIG.md). The config comes from $EBATS_CONFIG (default /etc/ebats/ebats.yaml).
"""
import ebats

upstream = [{"order_id": "FB138020392193312"}, {"order_id": "FB138020392193313"}, {"order_id": "FB138020392193314"}]

for message in upstream:
    task_id = ebats.Task.create("demo", "orderAsync", message)
    print("orderAsync created:", task_id)
