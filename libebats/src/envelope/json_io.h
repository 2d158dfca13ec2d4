// The RapidJSON plumbing shared by the envelope codec and result records:
// the parse flags, a Writer that appends to a std::string, and compaction of
// one JSON object with its numbers kept byte for byte.
//
// Everything here is iterative (RapidJSON's iterative parser, Writer's heap
// stack), so deeply nested input cannot overflow the call stack.
// Nothing throws; all functions are pure and thread-safe.
#pragma once

#include <rapidjson/allocators.h>
#include <rapidjson/document.h>
#include <rapidjson/reader.h>
#include <rapidjson/writer.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace ebats::json {

// How ebats parses JSON from outside: UTF-8 is validated, the parser keeps its
// stack on the heap, and numbers arrive as their source text (RawNumber), so
// params are handed on without losing digits (1e400-sized values still fail).
constexpr unsigned kReadFlags = rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag |
                                rapidjson::kParseNumbersAsStringsFlag;

// A RapidJSON output stream appending to a caller-owned std::string.
class StringSink {
 public:
  using Ch = char;
  explicit StringSink(std::string* out) : out_(out) {}
  void Put(char c) { out_->push_back(c); }
  void Flush() {}

 private:
  std::string* out_;
};

using Writer = rapidjson::Writer<StringSink>;

// For short-lived parses on a hot path: the parser's stack, a DOM's stack and
// values, and a Writer's level stack all drawn from one pool the caller backs
// with a buffer on its stack. A small document is then read without a heap
// allocation; with the default CrtAllocator each of those stacks allocates
// its allocator object and its buffer on first use (two mallocs apiece).
using PoolAllocator = rapidjson::MemoryPoolAllocator<>;
using PoolReader = rapidjson::GenericReader<rapidjson::UTF8<>, rapidjson::UTF8<>, PoolAllocator>;
using PoolDocument = rapidjson::GenericDocument<rapidjson::UTF8<>, PoolAllocator, PoolAllocator>;
using PoolWriter = rapidjson::Writer<StringSink, rapidjson::UTF8<>, rapidjson::UTF8<>, PoolAllocator>;

// Writes `s` as a JSON string; invalid UTF-8 becomes U+FFFD, so the output
// stays valid JSON whatever the bytes were.
void write_string(Writer& w, std::string_view s);

// Writes a number that the parser delivered as text (kParseNumbersAsStringsFlag).
// RapidJSON 1.1's Writer::RawNumber would quote it, hence RawValue.
template <class AnyWriter>
inline bool write_raw_number(AnyWriter& w, const char* text, size_t length) {
  return w.RawValue(text, length, rapidjson::kNumberType);
}

// False when a string delivered by the parser is not valid UTF-8. The parser
// validates raw bytes, but it decodes an escaped lone low surrogate ("\udc00")
// to the bytes ED B0 80, which no strict reader (ours included) accepts.
bool decoded_string_is_valid(const char* s, size_t length);
constexpr const char* kLoneSurrogateMessage =
    "string holds an escaped UTF-16 surrogate without its pair (\\udc00-\\udfff); escape the pair or send the raw "
    "UTF-8 character";

// The deepest params may nest objects and arrays, counting params itself as
// level 1 (docs/WIRE.md): deeper input is refused where it enters, so no
// recursive reader (a plugin's DOM, its destructor) can run out of stack.
constexpr size_t kMaxParamsNesting = 128;
constexpr const char* kTooDeepMessage = "objects and arrays nested deeper than 128 levels (the limit for params)";

// "offset 17: Missing a name for object member."
std::string describe_parse_error(size_t offset, const char* message);
std::string describe_parse_error(const rapidjson::ParseResult& r);

// How a parse ended when it must yield exactly one JSON object.
enum class ObjectParse { ok, malformed, not_object };

// Parses `text` as exactly one JSON object (surrounding whitespace allowed)
// and appends its compact form to *out. On failure returns why and sets
// *detail ("offset 3: Invalid value." / "expected a JSON object, found array");
// *out then holds a partial result that the caller must discard.
ObjectParse compact_object(std::string_view text, std::string* out, std::string* detail);

// "object", "array", "string", "number", "boolean", "null".
const char* json_type_name(rapidjson::Type t);

}  // namespace ebats::json
