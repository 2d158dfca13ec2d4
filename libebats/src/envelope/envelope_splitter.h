// EnvelopeSplitter: the SAX handler with which decode_envelope() reads an
// envelope in a single pass.
//
// The root must be an object. Its "params" member is written straight into a
// compact Writer (numbers verbatim), so the params text needs no second walk;
// the other known members are forwarded into a small Document for
// validation; unknown members go, compact, into one object of their own,
// which re-encoding carries along (docs/WIRE.md §1). Strings that
// decoded to invalid UTF-8 (an escaped lone surrogate) stop the parse.
// Nothing recurses, so nesting depth is bounded only by the size limit.
// One instance reads one message; not thread-safe.
#pragma once

#include <rapidjson/document.h>

#include <cstddef>
#include <string>
#include <vector>

#include "envelope/envelope_fields.h"
#include "envelope/json_io.h"

namespace ebats {

class EnvelopeSplitter {
 public:
  // REQUIRES: *doc is empty; all four outlive the splitter. *params_out
  // receives the compact params text, *unknown_out the unknown top-level
  // members as one compact object (both appended; nothing when there are none).
  // The two writers keep their stacks in *pool.
  EnvelopeSplitter(json::PoolDocument* doc, std::string* params_out, std::string* unknown_out,
                   json::PoolAllocator* pool);
  // Input with no backslash cannot decode to a lone surrogate: its strings
  // need no check after the parser (decoded_string_is_valid()).
  void set_input_has_escapes(bool has) { check_strings_ = has; }
  EnvelopeSplitter(const EnvelopeSplitter&) = delete;  // the writer points into this object
  EnvelopeSplitter& operator=(const EnvelopeSplitter&) = delete;

  // Why the splitter stopped the parse, if it did (the parser then reports
  // kParseErrorTermination at the offset where it stopped).
  bool root_not_object() const { return root_not_object_; }
  rapidjson::Type root_type() const { return root_type_; }
  bool bad_string() const { return bad_string_; }
  // A member's value nested deeper than json::kMaxParamsNesting levels.
  bool too_deep() const { return too_deep_; }
  const ParamsSeen& params_seen() const { return params_; }
  // The first unknown top-level member that came more than once ("" if none).
  const std::string& repeated_unknown() const { return repeated_unknown_; }

  // RapidJSON handler interface.
  bool Null();
  bool Bool(bool b);
  bool Int(int i);
  bool Uint(unsigned u);
  bool Int64(int64_t i);
  bool Uint64(uint64_t u);
  bool Double(double d);
  bool RawNumber(const char* s, rapidjson::SizeType n, bool copy);
  bool String(const char* s, rapidjson::SizeType n, bool copy);
  bool Key(const char* s, rapidjson::SizeType n, bool copy);
  bool StartObject();
  bool EndObject(rapidjson::SizeType members);
  bool StartArray();
  bool EndArray(rapidjson::SizeType elements);

 private:
  enum class Route : uint8_t { none, dom, params, unknown, skip };

  // to_dom() forwards an event to the DOM; to_writer(w) to a compact writer
  // (params or unknown members, whichever the current member goes to).
  template <class ToDom, class ToWriter>
  bool scalar(rapidjson::Type t, ToDom to_dom, ToWriter to_writer);
  template <class ToDom, class ToWriter>
  bool open(rapidjson::Type t, ToDom to_dom, ToWriter to_writer);
  template <class ToDom, class ToWriter>
  bool close(ToDom to_dom, ToWriter to_writer);
  template <class ToDom, class ToWriter>
  bool dispatch(ToDom to_dom, ToWriter to_writer);
  bool number_to_dom(const char* s, size_t n);
  bool refuse_root(rapidjson::Type t);

  json::PoolDocument* doc_;
  json::StringSink params_sink_;
  json::PoolWriter params_writer_;
  json::StringSink unknown_sink_;
  json::PoolWriter unknown_writer_;
  bool unknown_open_ = false;          // the unknown members' object has been started
  std::vector<std::string> unknown_names_;  // in order; few, so a list
  std::string repeated_unknown_;
  size_t depth_ = 0;                   // open containers, the root object included
  Route route_ = Route::none;          // where the current top-level member's value goes
  rapidjson::SizeType dom_members_ = 0;
  ParamsSeen params_;
  bool root_not_object_ = false;
  rapidjson::Type root_type_ = rapidjson::kObjectType;
  bool bad_string_ = false;
  bool too_deep_ = false;
  bool check_strings_ = true;
};

}  // namespace ebats
