<?php

declare(strict_types=1);

namespace Ebats;

use FFI;
use FFI\CData;

/**
 * Many events and tasks published by one commit (Publisher::batch()).
 *
 *     $batch = $publisher->batch();
 *     $batch->addEvent('order_paied', ['order_id' => 1]);
 *     $batch->addTask('demo', 'orderAsync', ['order_id' => 2], 5);
 *     $batch->commit();
 *
 * addEvent()/addTask() check the message and return its id at once; a refused
 * one throws and leaves the batch as it was. commit() publishes everything and
 * empties the batch, also when it fails:
 *  - SQLite: one transaction, all or nothing;
 *  - RabbitMQ: each message is confirmed; a failed commit may have published
 *    some of them. Add the same messages again, events with the same ids
 *    (the ids addEvent() returned), and commit again: a re-published event
 *    yields the same task ids. A task added directly gets a new id each time,
 *    so a re-added one may run twice (handlers are idempotent anyway).
 */
final class Batch implements \Countable
{
    private ?CData $handle;

    /** @internal made by Publisher::batch() */
    public function __construct(private readonly Publisher $publisher, private readonly Native $native, CData $handle)
    {
        $this->handle = $handle;
    }

    /**
     * Adds event $event (as Publisher::publish()).
     *
     * @return string the event id
     * @throws PublishException|ParamsException|ClosedException
     */
    public function addEvent(string $event, array|object $params = [], ?string $id = null, ?string $trace = null): string
    {
        $b = $this->live();
        $json = Native::encodeParams($params);
        return $this->native->withOptions($id, $trace, 0, function (CData $o) use ($b, $event, $json): string {
            $buf = $this->native->idBuffer();
            $err = $this->native->errorSlot();
            $rc = $this->native->ffi->ebats_batch_add_event($b, Native::cstr('event name', $event), $json, strlen($json), $o, $buf, FFI::addr($err));
            $this->native->check($rc, $err, PublishException::class);
            return FFI::string($buf);
        });
    }

    /**
     * Adds one task (as Publisher::createTask()).
     *
     * @return string the task id
     * @throws PublishException|ParamsException|ClosedException
     */
    public function addTask(string $topic, string $name, array|object $params = [], int|float $delaySeconds = 0,
                            ?string $trace = null): string
    {
        $b = $this->live();
        $json = Native::encodeParams($params);
        $delay = Native::delayMs($delaySeconds);
        return $this->native->withOptions(null, $trace, $delay, function (CData $o) use ($b, $topic, $name, $json): string {
            $buf = $this->native->idBuffer();
            $err = $this->native->errorSlot();
            $rc = $this->native->ffi->ebats_batch_add_task($b, Native::cstr('topic', $topic), Native::cstr('task name', $name),
                $json, strlen($json), $o, $buf, FFI::addr($err));
            $this->native->check($rc, $err, PublishException::class);
            return FFI::string($buf);
        });
    }

    /** How many messages wait to be committed. */
    public function count(): int
    {
        return $this->handle === null ? 0 : $this->native->ffi->ebats_batch_size($this->handle);
    }

    /**
     * Publishes everything added and empties the batch (also when it fails).
     * An empty batch commits nothing and succeeds.
     *
     * @return int how many messages were published
     * @throws PublishException|ClosedException
     */
    public function commit(): int
    {
        $b = $this->live();
        $n = $this->native->ffi->ebats_batch_size($b);
        $err = $this->native->errorSlot();
        $this->native->check($this->native->ffi->ebats_batch_commit($b, FFI::addr($err)), $err, PublishException::class);
        return $n;
    }

    /**
     * @internal Frees the handle (Publisher::close() calls it before closing
     * the connection; a batch must not outlive its publisher).
     */
    public function release(bool $free = true): void
    {
        if ($this->handle !== null && $free) {
            $this->native->ffi->ebats_batch_free($this->handle);
        }
        $this->handle = null;
    }

    public function __destruct()
    {
        if ($this->handle !== null && !$this->publisher->isClosed()) {
            $this->release(getmypid() === $this->publisher->openedBy());
        }
    }

    private function live(): CData
    {
        $this->publisher->live();  // ClosedException once the publisher is closed
        if ($this->handle === null) {
            throw new ClosedException('ebats: this batch was freed when its publisher was closed');
        }
        return $this->handle;
    }
}
