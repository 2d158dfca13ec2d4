<?php

declare(strict_types=1);

namespace Ebats;

/**
 * The params are not a JSON object: a list array, or data json_encode()
 * refuses (INF, NAN, a resource, invalid UTF-8). Thrown before anything is
 * handed to libebats.
 */
class ParamsException extends PublishException
{
}
