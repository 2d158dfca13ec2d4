<?php
/*
 * Delayed close of an unpaid order: publish `order_create` when an order is
 * made. The config registers `order_create -> closeOrder` with a delay (2 s in
 * the tests, e.g. 30m in a shop), so closeOrder runs that long after the
 * publish and closes the order if it is still unpaid by then.
 *
 * Run it in a composer project that required ebats/ebats (docs/PHP.md):
 * `php close_unpaid_order.php`, with the config from $EBATS_CONFIG
 * (default /etc/ebats/ebats.yaml).
 */
require_once __DIR__ . '/vendor/autoload.php';

use Ebats\EbatsException;
use Ebats\Event;

try {
    $event = new Event('order_create');
    $event->setOptions(['order_id' => 'FB138020392193312'])
          ->setTrace('checkout-1');                  // shows in the result records' "trace"
    echo 'order_create published: ', $event->publish(), "\n";
} catch (EbatsException $exc) {
    fwrite(STDERR, $exc->getMessage() . "\n");
    exit(1);
}
