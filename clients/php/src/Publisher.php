<?php

declare(strict_types=1);

namespace Ebats;

use FFI;
use FFI\CData;

/**
 * One connection to the ebats broker of a config file (SQLite or RabbitMQ:
 * the config's `broker` section decides). Every publish returns once the
 * message is durable, or throws.
 *
 *     $p = Publisher::open();                       // EBATS_CONFIG, else /etc/ebats/ebats.yaml
 *     $id = $p->publish('order_paied', ['order_id' => 'FB138020392193312']);
 *     $p->close();
 *
 * Not thread-safe, and not to be shared across fork(): one publisher per
 * process (or thread). A publisher inherited through fork() is never closed
 * by the child (that would close the parent's connection): open a new one.
 */
final class Publisher
{
    private ?CData $handle;
    private readonly int $pid;
    /** @var \WeakMap<Batch, true> open batches, freed before the handle */
    private \WeakMap $batches;

    private function __construct(private readonly Native $native, CData $handle, public readonly string $config)
    {
        $this->handle = $handle;
        $this->pid = getmypid();
        $this->batches = new \WeakMap();
    }

    /**
     * Opens a publisher. $config and $library default to what
     * Client::configure() set, then to the environment (EBATS_CONFIG,
     * EBATS_LIBRARY), then to /etc/ebats/ebats.yaml and libebats.so.0.
     *
     * @throws ConfigException
     */
    public static function open(?string $config = null, ?string $library = null): self
    {
        $config ??= Client::configPath();
        $native = Native::load($library ?? Client::libraryPath());
        $out = $native->ffi->new('ebats_publisher*');
        $err = $native->errorSlot();
        $rc = $native->ffi->ebats_publisher_open(Native::cstr('config path', $config), FFI::addr($out), FFI::addr($err));
        $native->check($rc, $err, ConfigException::class);
        return new self($native, $out, $config);
    }

    /**
     * Publishes event $event with $params (an array with keys, or an object;
     * [] is {}). $id: the event's id, a lowercase UUID (Client::newEventId()),
     * to publish idempotently: the same id again yields the same tasks, which
     * SQLite queues once. $trace: a correlation id (<= 128 bytes) carried
     * into every task and result record.
     *
     * @return string the event id
     * @throws PublishException|ParamsException|ClosedException
     */
    public function publish(string $event, array|object $params = [], ?string $id = null, ?string $trace = null): string
    {
        $h = $this->live();
        $json = Native::encodeParams($params);
        $ffi = $this->native->ffi;
        return $this->native->withOptions($id, $trace, 0, function (CData $o) use ($ffi, $h, $event, $json): string {
            $buf = $this->native->idBuffer();
            $err = $this->native->errorSlot();
            $rc = $ffi->ebats_publish_event_opts($h, Native::cstr('event name', $event), $json, strlen($json), $o, $buf, FFI::addr($err));
            $this->native->check($rc, $err, PublishException::class);
            return FFI::string($buf);
        });
    }

    /**
     * Creates one task of handler $name on $topic directly, without an event
     * (the original's Task::create), due $delaySeconds from now (int or
     * float, rounded to milliseconds; 0 = now).
     *
     * @return string the task id (the `task_id` of its result records)
     * @throws PublishException|ParamsException|ClosedException
     */
    public function createTask(string $topic, string $name, array|object $params = [], int|float $delaySeconds = 0,
                               ?string $trace = null): string
    {
        $h = $this->live();
        $json = Native::encodeParams($params);
        $delay = Native::delayMs($delaySeconds);
        $ffi = $this->native->ffi;
        return $this->native->withOptions(null, $trace, $delay, function (CData $o) use ($ffi, $h, $topic, $name, $json): string {
            $buf = $this->native->idBuffer();
            $err = $this->native->errorSlot();
            $rc = $ffi->ebats_enqueue_task_opts($h, Native::cstr('topic', $topic), Native::cstr('task name', $name),
                $json, strlen($json), $o, $buf, FFI::addr($err));
            $this->native->check($rc, $err, PublishException::class);
            return FFI::string($buf);
        });
    }

    /** A new, empty batch: many events and tasks in one commit (see Batch). */
    public function batch(): Batch
    {
        $b = $this->native->ffi->ebats_batch_new($this->live());
        if ($b === null || FFI::isNull($b)) {
            throw new PublishException('ebats_batch_new: out of memory');
        }
        $batch = new Batch($this, $this->native, $b);
        $this->batches[$batch] = true;
        return $batch;
    }

    /** Whether close() was called. */
    public function isClosed(): bool
    {
        return $this->handle === null;
    }

    /**
     * Frees this publisher's batches (what they hold uncommitted is dropped),
     * then closes the connection. Idempotent; any later use throws
     * ClosedException.
     */
    public function close(): void
    {
        if ($this->handle === null) {
            return;
        }
        // After fork() the child only forgets the handles: closing them would
        // close the parent's connection.
        $owner = getmypid() === $this->pid;
        foreach ($this->batches as $batch => $_) {
            $batch->release($owner);
        }
        $this->batches = new \WeakMap();
        $handle = $this->handle;
        $this->handle = null;
        if ($owner) {
            $this->native->ffi->ebats_publisher_close($handle);
        }
    }

    public function __destruct()
    {
        $this->close();
    }

    /** The open handle (for Batch too); ClosedException after close(). */
    public function live(): CData
    {
        if ($this->handle === null) {
            throw new ClosedException("ebats: the publisher of '{$this->config}' is closed");
        }
        return $this->handle;
    }

    /** @internal the process that opened it (Ebats reopens the default publisher after a fork) */
    public function openedBy(): int
    {
        return $this->pid;
    }
}
