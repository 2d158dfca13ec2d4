<?php

declare(strict_types=1);

namespace Ebats;

/**
 * libebats cannot be loaded, or a publisher cannot be opened: the config file
 * is missing or invalid, or (RabbitMQ) the broker cannot be reached or refuses
 * the login. The message says which.
 */
class ConfigException extends EbatsException
{
}
