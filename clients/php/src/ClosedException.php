<?php

declare(strict_types=1);

namespace Ebats;

/** A publisher, or a batch of one, was used after Publisher::close(). */
class ClosedException extends EbatsException
{
}
