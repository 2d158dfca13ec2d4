<?php

declare(strict_types=1);

namespace Ebats;

/**
 * Creating a task directly, without an event, as the original's
 * Asynclib\Ebats\Task::create() (used by custom schedulers):
 *
 *     Task::create('demo', 'orderAsync', $msg);        // now
 *     Task::create('demo', 'closeOrder', $msg, 10);    // in 10 seconds
 */
final class Task
{
    /**
     * Creates task $name on $topic through the default publisher, due
     * $delaySeconds from now (int or float; rounded to milliseconds).
     *
     * @return string the task id (the `task_id` of its result records)
     * @throws EbatsException
     */
    public static function create(string $topic, string $name, array|object $params = [], int|float $delaySeconds = 0,
                                  ?string $trace = null): string
    {
        return Client::publisher()->createTask($topic, $name, $params, $delaySeconds, $trace);
    }
}
