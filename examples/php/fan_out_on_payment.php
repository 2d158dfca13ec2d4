<?php
/*
 * Fan-out on payment: one `order_paied` event, one task per registration in
 * the config (virtualShipping and sendReceipt). Written as with the original
 * library; only the `use` line changed (Asynclib\Ebats\Event -> Ebats\Event).
 *
 * Run it in a composer project that required ebats/ebats (docs/PHP.md):
 * `php fan_out_on_payment.php`, with the config from $EBATS_CONFIG
 * (default /etc/ebats/ebats.yaml).
 */
require_once __DIR__ . '/vendor/autoload.php';

use Ebats\Event;

try {
    $event = new Event('order_paied');                            // define the event
    $event->setOptions(['order_id' => 'FB138020392193312']);      // the event's params
    echo 'order_paied published: ', $event->publish(), "\n";      // the event id
} catch (Exception $exc) {
    fwrite(STDERR, $exc->getMessage() . "\n");
    exit(1);
}
