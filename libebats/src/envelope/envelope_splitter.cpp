#include "envelope/envelope_splitter.h"

#include <algorithm>
#include <charconv>
#include <string_view>

namespace ebats {
namespace {
// The writers' level stacks start this deep (they grow, from the pool, for
// deeper params): 16 bytes a level.
constexpr size_t kWriterLevels = 16;
}  // namespace

EnvelopeSplitter::EnvelopeSplitter(json::PoolDocument* doc, std::string* params_out, std::string* unknown_out,
                                   json::PoolAllocator* pool)
    : doc_(doc),
      params_sink_(params_out),
      params_writer_(params_sink_, pool, kWriterLevels),
      unknown_sink_(unknown_out),
      unknown_writer_(unknown_sink_, pool, kWriterLevels) {}

template <class ToDom, class ToWriter>
bool EnvelopeSplitter::dispatch(ToDom to_dom, ToWriter to_writer) {
  switch (route_) {
    case Route::dom: return to_dom();
    case Route::params: return to_writer(params_writer_);
    case Route::unknown: return to_writer(unknown_writer_);
    case Route::none:
    case Route::skip: return true;
  }
  return true;
}

template <class ToDom, class ToWriter>
bool EnvelopeSplitter::scalar(rapidjson::Type t, ToDom to_dom, ToWriter to_writer) {
  if (depth_ == 0) return refuse_root(t);
  if (depth_ == 1 && route_ == Route::params) params_.type = t;
  const bool ok = dispatch(to_dom, to_writer);
  if (depth_ == 1) route_ = Route::none;  // a scalar member value is complete
  return ok;
}

template <class ToDom, class ToWriter>
bool EnvelopeSplitter::open(rapidjson::Type t, ToDom to_dom, ToWriter to_writer) {
  if (depth_ == 0) {
    if (t != rapidjson::kObjectType) return refuse_root(t);
    depth_ = 1;
    return doc_->StartObject();
  }
  if (depth_ == 1 && route_ == Route::params) params_.type = t;
  // The root object is level 0 of the members' values: params may nest
  // kMaxParamsNesting levels, and so may any other member.
  if (++depth_ > json::kMaxParamsNesting + 1) {
    too_deep_ = true;
    return false;
  }
  return dispatch(to_dom, to_writer);
}

template <class ToDom, class ToWriter>
bool EnvelopeSplitter::close(ToDom to_dom, ToWriter to_writer) {
  --depth_;
  if (depth_ == 0) {
    if (unknown_open_ && !unknown_writer_.EndObject()) return false;
    return doc_->EndObject(dom_members_);  // only the members the DOM received
  }
  const bool ok = dispatch(to_dom, to_writer);
  if (depth_ == 1) route_ = Route::none;  // a container member value is complete
  return ok;
}

bool EnvelopeSplitter::refuse_root(rapidjson::Type t) {
  root_not_object_ = true;
  root_type_ = t;
  return false;
}

// Top-level fields are integers; the DOM gets typed numbers so the validator
// can tell -3, 2^64 and 1.5 apart. Params never come through here.
bool EnvelopeSplitter::number_to_dom(const char* s, size_t n) {
  const bool integer = std::none_of(s, s + n, [](char c) { return c == '.' || c == 'e' || c == 'E'; });
  if (integer) {
    if (s[0] == '-') {
      int64_t i = 0;
      if (std::from_chars(s, s + n, i).ec == std::errc()) return doc_->Int64(i);
    } else {
      uint64_t u = 0;
      if (std::from_chars(s, s + n, u).ec == std::errc()) return doc_->Uint64(u);
    }
  }
  double d = 0;
  std::from_chars(s, s + n, d);  // the parser already checked the syntax and range
  return doc_->Double(d);
}

bool EnvelopeSplitter::Null() {
  return scalar(rapidjson::kNullType, [&] { return doc_->Null(); }, [&](json::PoolWriter& w) { return w.Null(); });
}

bool EnvelopeSplitter::Bool(bool b) {
  return scalar(b ? rapidjson::kTrueType : rapidjson::kFalseType, [&] { return doc_->Bool(b); },
                [&](json::PoolWriter& w) { return w.Bool(b); });
}

// With kParseNumbersAsStringsFlag numbers arrive only through RawNumber; the
// typed callbacks exist because the handler concept requires them.
bool EnvelopeSplitter::Int(int i) {
  return scalar(rapidjson::kNumberType, [&] { return doc_->Int(i); }, [&](json::PoolWriter& w) { return w.Int(i); });
}
bool EnvelopeSplitter::Uint(unsigned u) {
  return scalar(rapidjson::kNumberType, [&] { return doc_->Uint(u); }, [&](json::PoolWriter& w) { return w.Uint(u); });
}
bool EnvelopeSplitter::Int64(int64_t i) {
  return scalar(rapidjson::kNumberType, [&] { return doc_->Int64(i); }, [&](json::PoolWriter& w) { return w.Int64(i); });
}
bool EnvelopeSplitter::Uint64(uint64_t u) {
  return scalar(rapidjson::kNumberType, [&] { return doc_->Uint64(u); },
                [&](json::PoolWriter& w) { return w.Uint64(u); });
}
bool EnvelopeSplitter::Double(double d) {
  return scalar(rapidjson::kNumberType, [&] { return doc_->Double(d); },
                [&](json::PoolWriter& w) { return w.Double(d); });
}

bool EnvelopeSplitter::RawNumber(const char* s, rapidjson::SizeType n, bool) {
  return scalar(rapidjson::kNumberType, [&] { return number_to_dom(s, n); },
                [&](json::PoolWriter& w) { return json::write_raw_number(w, s, n); });
}

bool EnvelopeSplitter::String(const char* s, rapidjson::SizeType n, bool) {
  if (check_strings_ && !json::decoded_string_is_valid(s, n)) {
    bad_string_ = true;
    return false;
  }
  return scalar(rapidjson::kStringType, [&] { return doc_->String(s, n, true); },
                [&](json::PoolWriter& w) { return w.String(s, n); });
}

bool EnvelopeSplitter::Key(const char* s, rapidjson::SizeType n, bool) {
  if (check_strings_ && !json::decoded_string_is_valid(s, n)) {
    bad_string_ = true;
    return false;
  }
  if (depth_ != 1) {
    return dispatch([&] { return doc_->Key(s, n, true); }, [&](json::PoolWriter& w) { return w.Key(s, n); });
  }
  const std::optional<EnvelopeField> field = envelope_field_named(std::string_view(s, n));
  if (!field) {
    // Unknown members are not interpreted (forward compatibility within v1)
    // but kept, so that re-encoding the envelope carries them along. A
    // repeated one is kept once and reported (the first is what a re-encoding
    // writes; decode_envelope() refuses the message).
    std::string name(s, n);
    if (std::find(unknown_names_.begin(), unknown_names_.end(), name) != unknown_names_.end()) {
      if (repeated_unknown_.empty()) repeated_unknown_ = std::move(name);
      route_ = Route::skip;
      return true;
    }
    unknown_names_.push_back(std::move(name));
    if (!unknown_open_) {
      unknown_open_ = true;
      if (!unknown_writer_.StartObject()) return false;
    }
    route_ = Route::unknown;
    return unknown_writer_.Key(s, n);
  } else if (*field == EnvelopeField::params) {
    // A second "params" is skipped here and refused by the validator.
    route_ = ++params_.count == 1 ? Route::params : Route::skip;
  } else {
    route_ = Route::dom;
    ++dom_members_;
    return doc_->Key(s, n, true);
  }
  return true;
}

bool EnvelopeSplitter::StartObject() {
  return open(rapidjson::kObjectType, [&] { return doc_->StartObject(); },
              [&](json::PoolWriter& w) { return w.StartObject(); });
}

bool EnvelopeSplitter::EndObject(rapidjson::SizeType members) {
  return close([&] { return doc_->EndObject(members); }, [&](json::PoolWriter& w) { return w.EndObject(members); });
}

bool EnvelopeSplitter::StartArray() {
  return open(rapidjson::kArrayType, [&] { return doc_->StartArray(); },
              [&](json::PoolWriter& w) { return w.StartArray(); });
}

bool EnvelopeSplitter::EndArray(rapidjson::SizeType elements) {
  return close([&] { return doc_->EndArray(elements); }, [&](json::PoolWriter& w) { return w.EndArray(elements); });
}

}  // namespace ebats
