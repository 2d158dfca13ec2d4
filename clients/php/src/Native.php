<?php

declare(strict_types=1);

namespace Ebats;

use FFI;
use FFI\CData;

/**
 * @internal The FFI binding of libebats' C producer API (ebats/publisher_c.h).
 *
 * One instance per library path. Everything that crosses into C goes through
 * here: C strings are checked for NUL bytes, error strings are copied into a
 * PHP exception and freed with ebats_free_error(), and ids come back through
 * char[37] buffers.
 */
final class Native
{
    /** The C API version these declarations are written against. */
    public const API_VERSION = 1;

    /**
     * The declarations of ebats/publisher_c.h, its EBATS_C_EXPORT macros
     * stripped (FFI::cdef takes no preprocessor). The test compares them
     * with the header, so they cannot drift apart unnoticed.
     */
    public const CDEF = <<<'C'
        typedef struct ebats_publisher ebats_publisher;
        typedef struct ebats_options ebats_options;
        typedef struct ebats_batch ebats_batch;
        const char *ebats_version(void);
        int ebats_c_api_version(void);
        int ebats_publisher_open(const char *config_path, ebats_publisher **out, char **errptr);
        void ebats_publisher_close(ebats_publisher *p);
        ebats_options *ebats_options_new(void);
        void ebats_options_free(ebats_options *o);
        int ebats_options_set_event_id(ebats_options *o, const char *event_id, char **errptr);
        int ebats_options_set_trace_id(ebats_options *o, const char *trace_id, char **errptr);
        int ebats_options_set_delay_ms(ebats_options *o, uint64_t delay_ms, char **errptr);
        int ebats_publish_event(ebats_publisher *p, const char *name, const char *json, size_t len, char id_out[37], char **errptr);
        int ebats_publish_event_opts(ebats_publisher *p, const char *name, const char *json, size_t len, const ebats_options *o, char id_out[37], char **errptr);
        int ebats_enqueue_task(ebats_publisher *p, const char *topic, const char *task, const char *json, size_t len, uint64_t delay_ms, char id_out[37], char **errptr);
        int ebats_enqueue_task_opts(ebats_publisher *p, const char *topic, const char *task, const char *json, size_t len, const ebats_options *o, char id_out[37], char **errptr);
        ebats_batch *ebats_batch_new(ebats_publisher *p);
        void ebats_batch_free(ebats_batch *b);
        int ebats_batch_add_event(ebats_batch *b, const char *name, const char *json, size_t len, const ebats_options *o, char id_out[37], char **errptr);
        int ebats_batch_add_task(ebats_batch *b, const char *topic, const char *task, const char *json, size_t len, const ebats_options *o, char id_out[37], char **errptr);
        size_t ebats_batch_size(const ebats_batch *b);
        int ebats_batch_commit(ebats_batch *b, char **errptr);
        void ebats_free_error(char *err);
        C;

    /** @var array<string, self> loaded libraries by path */
    private static array $loaded = [];

    private function __construct(public readonly FFI $ffi, public readonly string $library)
    {
    }

    /** The binding of `$library` (a path, or a name the dynamic loader finds). */
    public static function load(string $library): self
    {
        if (isset(self::$loaded[$library])) {
            return self::$loaded[$library];
        }
        if (!extension_loaded('ffi')) {
            throw new ConfigException('ebats: the PHP extension ffi is not loaded (Debian: php8.2-cli ships it; check ffi.enable)');
        }
        try {
            $ffi = FFI::cdef(self::CDEF, $library);
        } catch (\FFI\Exception $e) {
            throw new ConfigException("ebats: cannot load libebats '$library': " . $e->getMessage()
                . ' (set EBATS_LIBRARY or Client::configure(library: ...) to its path)', 0, $e);
        }
        $version = $ffi->ebats_c_api_version();
        if ($version < self::API_VERSION) {
            throw new ConfigException("ebats: '$library' implements C API version $version, this package needs "
                . self::API_VERSION . ' or later: install a newer libebats');
        }
        return self::$loaded[$library] = new self($ffi, $library);
    }

    /** A char* slot for errptr, NULL until a call fails. */
    public function errorSlot(): CData
    {
        return $this->ffi->new('char*');
    }

    /** A char[37] buffer for an id_out parameter. */
    public function idBuffer(): CData
    {
        return $this->ffi->new('char[37]');
    }

    /**
     * Throws $class with the library's message when $rc is not 0; the message
     * string is freed with ebats_free_error() first.
     *
     * @param class-string<EbatsException> $class
     */
    public function check(int $rc, CData $err, string $class): void
    {
        if ($rc === 0) {
            return;
        }
        $message = 'ebats: call failed (no message)';
        if (!FFI::isNull($err)) {
            $message = FFI::string($err);
            $this->ffi->ebats_free_error($err);
        }
        throw new $class($message);
    }

    /**
     * A new ebats_options holding the given id, trace and delay, for $use; it
     * is freed afterwards whatever happens. Setters only copy (ids are checked
     * when used), so their failures are reported like a publish's.
     *
     * @template T
     * @param callable(CData): T $use
     * @return T
     */
    public function withOptions(?string $eventId, ?string $trace, int $delayMs, callable $use): mixed
    {
        $o = $this->ffi->ebats_options_new();
        if ($o === null || FFI::isNull($o)) {
            throw new PublishException('ebats_options_new: out of memory');
        }
        try {
            $err = $this->errorSlot();
            if ($eventId !== null) {
                $this->check($this->ffi->ebats_options_set_event_id($o, self::cstr('event id', $eventId), FFI::addr($err)), $err, PublishException::class);
            }
            if ($trace !== null) {
                $this->check($this->ffi->ebats_options_set_trace_id($o, self::cstr('trace', $trace), FFI::addr($err)), $err, PublishException::class);
            }
            if ($delayMs !== 0) {
                $this->check($this->ffi->ebats_options_set_delay_ms($o, $delayMs, FFI::addr($err)), $err, PublishException::class);
            }
            return $use($o);
        } finally {
            $this->ffi->ebats_options_free($o);
        }
    }

    /**
     * $value as a C string: a NUL byte would cut it short in C (and publish
     * "order" for "order\0x"), so it is refused here.
     */
    public static function cstr(string $what, string $value): string
    {
        if (str_contains($value, "\0")) {
            throw new PublishException("ebats: $what '" . addcslashes($value, "\0..\37") . "' contains a NUL byte");
        }
        return $value;
    }

    /**
     * Params as the JSON object ebats requires. An empty array becomes `{}`
     * (json_encode would give `[]`); a list array, or anything else that does
     * not encode to an object, is refused before anything is published.
     */
    public static function encodeParams(array|object $params): string
    {
        if ($params === []) {
            return '{}';
        }
        if (is_array($params) && array_is_list($params)) {
            throw new ParamsException('ebats: params must be a JSON object (an array with keys), not a list of '
                . count($params) . ' values');
        }
        try {
            $json = json_encode($params, JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR);
        } catch (\JsonException $e) {
            throw new ParamsException('ebats: params cannot be encoded as JSON: ' . $e->getMessage(), 0, $e);
        }
        if ($json === '[]') {
            return '{}';  // an empty JsonSerializable / ArrayObject
        }
        if ($json[0] !== '{') {
            throw new ParamsException("ebats: params must encode to a JSON object, got $json");
        }
        return $json;
    }

    /** Seconds (int or float) as whole milliseconds, rounded; negative, NAN and INF are refused. */
    public static function delayMs(int|float $seconds): int
    {
        if (is_float($seconds) && !is_finite($seconds)) {
            throw new PublishException("ebats: delay must be a finite number of seconds, got $seconds");
        }
        if ($seconds < 0) {
            throw new PublishException("ebats: delay must not be negative, got $seconds s");
        }
        $ms = $seconds * 1000;
        if ($ms >= PHP_INT_MAX) {
            throw new PublishException("ebats: delay of $seconds s is too large");
        }
        return (int) round($ms);
    }
}
