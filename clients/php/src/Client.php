<?php

declare(strict_types=1);

namespace Ebats;

/**
 * Package-wide settings and the default publisher that Event and Task use.
 *
 *     Client::configure('/etc/ebats/ebats.yaml');   // optional: EBATS_CONFIG, else this path
 *
 * The default publisher is opened on first use and kept for the process
 * (re-opened in a child after fork()). Code that needs its own connection, or
 * one per thread, uses Publisher::open() instead.
 */
final class Client
{
    public const DEFAULT_CONFIG = '/etc/ebats/ebats.yaml';
    public const DEFAULT_LIBRARY = 'libebats.so.0';

    private static ?string $config = null;
    private static ?string $library = null;
    private static ?Publisher $default = null;

    /**
     * Sets the config file and the libebats path for publishers opened from
     * now on, and closes the default publisher so the next use opens it with
     * them. null: the environment (EBATS_CONFIG, EBATS_LIBRARY), else
     * /etc/ebats/ebats.yaml and libebats.so.0 (found by the dynamic loader).
     * Nothing is opened here: a bad path throws ConfigException on first use.
     */
    public static function configure(?string $config = null, ?string $library = null): void
    {
        self::close();
        self::$config = $config;
        self::$library = $library;
    }

    /** The default publisher, opened on first use. @throws ConfigException */
    public static function publisher(): Publisher
    {
        $p = self::$default;
        if ($p === null || $p->isClosed() || $p->openedBy() !== getmypid()) {
            $p = self::$default = Publisher::open();
        }
        return $p;
    }

    /** Closes the default publisher (the next use opens it again). */
    public static function close(): void
    {
        self::$default?->close();
        self::$default = null;
    }

    /** The config path publishers open: configure()'s, else EBATS_CONFIG, else /etc/ebats/ebats.yaml. */
    public static function configPath(): string
    {
        return self::$config ?? self::env('EBATS_CONFIG') ?? self::DEFAULT_CONFIG;
    }

    /** The libebats publishers load: configure()'s, else EBATS_LIBRARY, else libebats.so.0. */
    public static function libraryPath(): string
    {
        return self::$library ?? self::env('EBATS_LIBRARY') ?? self::DEFAULT_LIBRARY;
    }

    /** libebats' version, e.g. "0.1.0". @throws ConfigException */
    public static function version(): string
    {
        return Native::load(self::libraryPath())->ffi->ebats_version();  // FFI returns const char* as a string
    }

    /**
     * A new event id for Event::setId() / publish(id: ...): a lowercase
     * UUIDv7 (time-ordered, as libebats makes them). Keep it with the order
     * and publish again with it when unsure whether a publish went through.
     */
    public static function newEventId(): string
    {
        $ms = (int) floor(microtime(true) * 1000);
        $b = substr(pack('J', $ms), 2) . random_bytes(10);  // 48-bit big-endian milliseconds, 80 random bits
        $b[6] = chr(0x70 | (ord($b[6]) & 0x0f));             // version 7
        $b[8] = chr(0x80 | (ord($b[8]) & 0x3f));             // RFC 9562 variant
        $h = bin2hex($b);
        return substr($h, 0, 8) . '-' . substr($h, 8, 4) . '-' . substr($h, 12, 4) . '-'
            . substr($h, 16, 4) . '-' . substr($h, 20);
    }

    private static function env(string $name): ?string
    {
        $v = getenv($name);
        return $v === false || $v === '' ? null : $v;
    }
}
