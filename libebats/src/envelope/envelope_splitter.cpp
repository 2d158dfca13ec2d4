#include "envelope/envelope_splitter.h"

#include <charconv>
#include <string_view>

namespace ebats {

EnvelopeSplitter::EnvelopeSplitter(rapidjson::Document* doc, std::string* params_out)
    : doc_(doc), params_sink_(params_out), params_writer_(params_sink_) {}

template <class ToDom, class ToParams>
bool EnvelopeSplitter::dispatch(ToDom to_dom, ToParams to_params) {
  switch (route_) {
    case Route::dom: return to_dom();
    case Route::params: return to_params();
    case Route::none:
    case Route::skip: return true;
  }
  return true;
}

template <class ToDom, class ToParams>
bool EnvelopeSplitter::scalar(rapidjson::Type t, ToDom to_dom, ToParams to_params) {
  if (depth_ == 0) return refuse_root(t);
  if (depth_ == 1 && route_ == Route::params) params_.type = t;
  const bool ok = dispatch(to_dom, to_params);
  if (depth_ == 1) route_ = Route::none;  // a scalar member value is complete
  return ok;
}

template <class ToDom, class ToParams>
bool EnvelopeSplitter::open(rapidjson::Type t, ToDom to_dom, ToParams to_params) {
  if (depth_ == 0) {
    if (t != rapidjson::kObjectType) return refuse_root(t);
    depth_ = 1;
    return doc_->StartObject();
  }
  if (depth_ == 1 && route_ == Route::params) params_.type = t;
  ++depth_;
  return dispatch(to_dom, to_params);
}

template <class ToDom, class ToParams>
bool EnvelopeSplitter::close(ToDom to_dom, ToParams to_params) {
  --depth_;
  if (depth_ == 0) return doc_->EndObject(dom_members_);  // only the members the DOM received
  const bool ok = dispatch(to_dom, to_params);
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
  const std::string_view text(s, n);
  if (text.find_first_of(".eE") == std::string_view::npos) {
    if (text.front() == '-') {
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
  return scalar(rapidjson::kNullType, [&] { return doc_->Null(); }, [&] { return params_writer_.Null(); });
}

bool EnvelopeSplitter::Bool(bool b) {
  return scalar(b ? rapidjson::kTrueType : rapidjson::kFalseType, [&] { return doc_->Bool(b); },
                [&] { return params_writer_.Bool(b); });
}

// With kParseNumbersAsStringsFlag numbers arrive only through RawNumber; the
// typed callbacks exist because the handler concept requires them.
bool EnvelopeSplitter::Int(int i) {
  return scalar(rapidjson::kNumberType, [&] { return doc_->Int(i); }, [&] { return params_writer_.Int(i); });
}
bool EnvelopeSplitter::Uint(unsigned u) {
  return scalar(rapidjson::kNumberType, [&] { return doc_->Uint(u); }, [&] { return params_writer_.Uint(u); });
}
bool EnvelopeSplitter::Int64(int64_t i) {
  return scalar(rapidjson::kNumberType, [&] { return doc_->Int64(i); }, [&] { return params_writer_.Int64(i); });
}
bool EnvelopeSplitter::Uint64(uint64_t u) {
  return scalar(rapidjson::kNumberType, [&] { return doc_->Uint64(u); },
                [&] { return params_writer_.Uint64(u); });
}
bool EnvelopeSplitter::Double(double d) {
  return scalar(rapidjson::kNumberType, [&] { return doc_->Double(d); },
                [&] { return params_writer_.Double(d); });
}

bool EnvelopeSplitter::RawNumber(const char* s, rapidjson::SizeType n, bool) {
  return scalar(rapidjson::kNumberType, [&] { return number_to_dom(s, n); },
                [&] { return json::write_raw_number(params_writer_, s, n); });
}

bool EnvelopeSplitter::String(const char* s, rapidjson::SizeType n, bool) {
  if (!json::decoded_string_is_valid(s, n)) {
    bad_string_ = true;
    return false;
  }
  return scalar(rapidjson::kStringType, [&] { return doc_->String(s, n, true); },
                [&] { return params_writer_.String(s, n); });
}

bool EnvelopeSplitter::Key(const char* s, rapidjson::SizeType n, bool) {
  if (!json::decoded_string_is_valid(s, n)) {
    bad_string_ = true;
    return false;
  }
  if (depth_ != 1) {
    return dispatch([&] { return doc_->Key(s, n, true); }, [&] { return params_writer_.Key(s, n); });
  }
  const std::optional<EnvelopeField> field = envelope_field_named(std::string_view(s, n));
  if (!field) {
    route_ = Route::skip;  // unknown members are ignored (forward compatibility within v1)
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
              [&] { return params_writer_.StartObject(); });
}

bool EnvelopeSplitter::EndObject(rapidjson::SizeType members) {
  return close([&] { return doc_->EndObject(members); }, [&] { return params_writer_.EndObject(members); });
}

bool EnvelopeSplitter::StartArray() {
  return open(rapidjson::kArrayType, [&] { return doc_->StartArray(); },
              [&] { return params_writer_.StartArray(); });
}

bool EnvelopeSplitter::EndArray(rapidjson::SizeType elements) {
  return close([&] { return doc_->EndArray(elements); }, [&] { return params_writer_.EndArray(elements); });
}

}  // namespace ebats
