<?php

declare(strict_types=1);

namespace Ebats;

/**
 * Every error of this package. The message is libebats' own, verbatim
 * ("ebats_publish_event: event 'bad name!': ..."), or, for what is refused
 * before reaching the library, one that starts with "ebats: ".
 */
class EbatsException extends \RuntimeException
{
}
