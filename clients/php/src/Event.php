<?php

declare(strict_types=1);

namespace Ebats;

/**
 * An event, as in the original Asynclib\Ebats\Event:
 *
 *     $event = new Event('order_paied');
 *     $event->setOptions(['order_id' => 'FB138020392193312']);   // its params
 *     $id = $event->publish();                                   // through the default publisher
 *
 * The scheduler creates the tasks the config registers under `events:` for
 * its name. setId() and setTrace() are ebats additions.
 */
final class Event
{
    private array|object $params = [];
    private ?string $id = null;
    private ?string $trace = null;

    public function __construct(private readonly string $name)
    {
    }

    public function getName(): string
    {
        return $this->name;
    }

    /** The event's params (the original's name for them): an array with keys, or an object. */
    public function setOptions(array|object $params): static
    {
        $this->params = $params;
        return $this;
    }

    public function getOptions(): array|object
    {
        return $this->params;
    }

    /**
     * The event id, a lowercase UUID (Client::newEventId()); null: a new one
     * per publish. Publishing again with the same id is idempotent.
     */
    public function setId(?string $id): static
    {
        $this->id = $id;
        return $this;
    }

    /** A correlation id (<= 128 bytes) carried into every task and result record; null: none. */
    public function setTrace(?string $trace): static
    {
        $this->trace = $trace;
        return $this;
    }

    /**
     * Publishes the event; returns once it is durable.
     *
     * @param Publisher|null $publisher null: the default one (Client::publisher())
     * @return string the event id
     * @throws EbatsException
     */
    public function publish(?Publisher $publisher = null): string
    {
        return ($publisher ?? Client::publisher())->publish($this->name, $this->params, $this->id, $this->trace);
    }
}
