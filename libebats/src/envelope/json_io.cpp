#include "envelope/json_io.h"

#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>

#include <cstring>

#include "envelope/utf8.h"

namespace ebats::json {
namespace {

// SAX handler for compact_object(): the first event must open an object;
// everything is forwarded to the writer, numbers verbatim.
class CompactObjectHandler {
 public:
  explicit CompactObjectHandler(Writer* w) : w_(w) {}

  bool Null() { return scalar(rapidjson::kNullType) && w_->Null(); }
  bool Bool(bool b) { return scalar(b ? rapidjson::kTrueType : rapidjson::kFalseType) && w_->Bool(b); }
  // With kParseNumbersAsStringsFlag numbers only arrive through RawNumber; the
  // typed callbacks exist because the handler concept requires them.
  bool Int(int i) { return scalar(rapidjson::kNumberType) && w_->Int(i); }
  bool Uint(unsigned u) { return scalar(rapidjson::kNumberType) && w_->Uint(u); }
  bool Int64(int64_t i) { return scalar(rapidjson::kNumberType) && w_->Int64(i); }
  bool Uint64(uint64_t u) { return scalar(rapidjson::kNumberType) && w_->Uint64(u); }
  bool Double(double d) { return scalar(rapidjson::kNumberType) && w_->Double(d); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool) {
    return scalar(rapidjson::kNumberType) && write_raw_number(*w_, s, n);
  }
  bool String(const char* s, rapidjson::SizeType n, bool) {
    if (!scalar(rapidjson::kStringType)) return false;
    if (!decoded_string_is_valid(s, n)) return refuse_string();
    return w_->String(s, n);
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    if (!decoded_string_is_valid(s, n)) return refuse_string();
    return w_->Key(s, n);
  }
  bool StartObject() {
    if (++depth_ > kMaxParamsNesting) return refuse_depth();
    return w_->StartObject();
  }
  bool EndObject(rapidjson::SizeType n) {
    --depth_;
    return w_->EndObject(n);
  }
  bool StartArray() {
    if (depth_ == 0) return refuse_root(rapidjson::kArrayType);
    if (++depth_ > kMaxParamsNesting) return refuse_depth();
    return w_->StartArray();
  }
  bool EndArray(rapidjson::SizeType n) {
    --depth_;
    return w_->EndArray(n);
  }

  bool root_not_object() const { return root_not_object_; }
  rapidjson::Type root_type() const { return root_type_; }
  bool bad_string() const { return bad_string_; }
  bool too_deep() const { return too_deep_; }

 private:
  bool scalar(rapidjson::Type t) { return depth_ > 0 || refuse_root(t); }
  bool refuse_root(rapidjson::Type t) {
    root_not_object_ = true;
    root_type_ = t;
    return false;
  }
  bool refuse_string() {
    bad_string_ = true;
    return false;
  }
  bool refuse_depth() {
    too_deep_ = true;
    return false;
  }

  Writer* w_;
  size_t depth_ = 0;
  bool root_not_object_ = false;
  bool bad_string_ = false;
  bool too_deep_ = false;
  rapidjson::Type root_type_ = rapidjson::kObjectType;
};

}  // namespace

void write_string(Writer& w, std::string_view s) {
  if (is_valid_utf8(s)) {
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  } else {
    const std::string clean = replace_invalid_utf8(s);
    w.String(clean.data(), static_cast<rapidjson::SizeType>(clean.size()));
  }
}

bool decoded_string_is_valid(const char* s, size_t length) {
  // Only the escape path can produce invalid bytes, and only as ED B0..BF xx.
  if (std::memchr(s, 0xED, length) == nullptr) return true;
  return is_valid_utf8(std::string_view(s, length));
}

std::string describe_parse_error(size_t offset, const char* message) {
  return "offset " + std::to_string(offset) + ": " + message;
}

std::string describe_parse_error(const rapidjson::ParseResult& r) {
  return describe_parse_error(r.Offset(), rapidjson::GetParseError_En(r.Code()));
}

const char* json_type_name(rapidjson::Type t) {
  switch (t) {
    case rapidjson::kNullType: return "null";
    case rapidjson::kFalseType:
    case rapidjson::kTrueType: return "boolean";
    case rapidjson::kObjectType: return "object";
    case rapidjson::kArrayType: return "array";
    case rapidjson::kStringType: return "string";
    case rapidjson::kNumberType: return "number";
  }
  return "unknown";
}

ObjectParse compact_object(std::string_view text, std::string* out, std::string* detail) {
  out->reserve(out->size() + text.size());
  StringSink sink(out);
  Writer writer(sink);
  CompactObjectHandler handler(&writer);
  rapidjson::MemoryStream in(text.data(), text.size());
  rapidjson::Reader reader;
  const rapidjson::ParseResult r = reader.Parse<kReadFlags>(in, handler);
  if (handler.root_not_object()) {
    *detail = std::string("expected a JSON object, found ") + json_type_name(handler.root_type());
    return ObjectParse::not_object;
  }
  if (handler.bad_string()) {
    *detail = describe_parse_error(r.Offset(), kLoneSurrogateMessage);
    return ObjectParse::malformed;
  }
  if (handler.too_deep()) {
    *detail = describe_parse_error(r.Offset(), kTooDeepMessage);
    return ObjectParse::malformed;
  }
  if (r.IsError()) {
    *detail = describe_parse_error(r);
    return ObjectParse::malformed;
  }
  // MemoryStream reports a NUL byte as the end of input; anything after it is junk.
  if (in.Tell() != text.size()) {
    *detail = describe_parse_error(in.Tell(), "NUL byte after the document.");
    return ObjectParse::malformed;
  }
  return ObjectParse::ok;
}

}  // namespace ebats::json
