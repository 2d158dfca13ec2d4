#!/usr/bin/env bash
# The ctest fixture of the "amqp" test pass: starts a fresh private RabbitMQ
# node (with a TLS listener) in DIR, or stops it. A node left running in DIR
# by an interrupted run is stopped and its data removed first.
#   tests/amqp/ctest-node.sh start DIR | stop DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
action=$1
dir=$2
case "$action" in
  start)
    "$here/rabbitmq-node.sh" stop "$dir" >/dev/null 2>&1 || true
    rm -rf "$dir"
    mkdir -p "$dir"
    "$here/rabbitmq-node.sh" start "$dir" --tls --name "ebats-ctest-$$"
    ;;
  stop)
    "$here/rabbitmq-node.sh" stop "$dir"
    ;;
  *)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
