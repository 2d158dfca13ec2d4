// Name-based UUIDs (version 5, SHA-1, RFC 9562 §5.5) and the ebats namespace.
//
// task_uuid() (ebats/envelope.h) starts from uuid_v5(kEbatsUuidNamespace,
// name); this header exists so tests can check that code path against the
// RFC's published example. Pure and thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace ebats {

// The namespace of all ebats task ids. Part of the wire format (docs/WIRE.md):
// changing it changes every task id, so it never changes.
constexpr std::string_view kEbatsUuidNamespace = "55d30b06-e5f9-4a5d-80c4-46acb6f9b7b3";

// Lowercase UUIDv5 of `name` (raw bytes, no terminator) in `namespace_uuid`.
// Returns "" when namespace_uuid is not a lowercase UUID (is_valid_uuid).
std::string uuid_v5(std::string_view namespace_uuid, std::string_view name);

}  // namespace ebats
