<?php
/*
 * A custom scheduler: create tasks directly, one per message of an upstream
 * queue, with Task::create (no event, no registration in the config).
 *
 * In the original, an Asynclib\Core\Consumer read the RabbitMQ queue
 * `shzf_order_paied` (exchange `order_fanout`, key *.*.WAIT_SELLER_SEND_GOODS)
 * and called Task::create for each message. The list below stands in for that
 * queue. On RabbitMQ, ebats-scheduler can consume such a queue itself
 * (`sources` in docs/CONFIG.md); a consumer of your own calls
 * Ebats\Task::create like this.
 *
 * Run it in a composer project that required ebats/ebats (docs/PHP.md):
 * `php custom_scheduler.php`, with the config from $EBATS_CONFIG
 * (default /etc/ebats/ebats.yaml).
 */
require_once __DIR__ . '/vendor/autoload.php';

use Ebats\EbatsException;
use Ebats\Task;

// [routing key, message] as the queue shzf_order_paied would deliver them.
$upstream = [
    ['shzf.order.WAIT_SELLER_SEND_GOODS', ['order_id' => 'FB138020392193312', 'buyer' => '张三']],
    ['shzf.order.WAIT_SELLER_SEND_GOODS', ['order_id' => 'FB138020392193313', 'buyer' => '李四']],
    ['shzf.order.WAIT_SELLER_SEND_GOODS', ['order_id' => 'FB138020392193314', 'buyer' => '王五']],
];

try {
    foreach ($upstream as [$key, $msg]) {
        $order_data = json_encode($msg, JSON_UNESCAPED_UNICODE);
        echo " [$key] $order_data\n";
        // The message becomes the task's params; a worker of topic demo runs orderAsync.
        echo 'orderAsync created: ', Task::create('demo', 'orderAsync', $msg), "\n";
    }
    // A task may also wait: the 4th argument is a delay in seconds (as in the original).
    echo 'orderAsync created (in 2 s): ', Task::create('demo', 'orderAsync', ['order_id' => 'FB138020392193315'], 2), "\n";
} catch (EbatsException $exc) {
    fwrite(STDERR, $exc->getMessage() . "\n");
    exit(1);
}
