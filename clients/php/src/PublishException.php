<?php

declare(strict_types=1);

namespace Ebats;

/**
 * A publish, a batch add or a batch commit was refused (bad name, bad id,
 * too large, ...) or failed (the broker). Nothing of a refused call is
 * published; see Batch::commit() for a failed commit on RabbitMQ.
 */
class PublishException extends EbatsException
{
}
