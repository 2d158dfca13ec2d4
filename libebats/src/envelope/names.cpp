// Name rules of the wire format (docs/WIRE.md). Plain character-class loops:
// these run for every decoded envelope, and a regex would cost far more.
#include "ebats/envelope.h"

namespace ebats {
namespace {

bool is_alnum_ascii(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

// [A-Za-z0-9_.:-]: dots and colons are allowed because an event name is the
// AMQP routing key (so "order.paid" can be matched by "order.*").
bool is_handler_name_char(char c) { return is_alnum_ascii(c) || c == '_' || c == '.' || c == ':' || c == '-'; }

// [A-Za-z0-9_-]: no dots (topics are parts of delay routing keys) and a valid
// systemd instance name.
bool is_topic_char(char c) { return is_alnum_ascii(c) || c == '_' || c == '-'; }

template <class CharOk>
bool all_of_class(std::string_view s, size_t max_len, CharOk ok) {
  if (s.empty() || s.size() > max_len) return false;
  for (char c : s) {
    if (!ok(c)) return false;
  }
  return true;
}

bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

}  // namespace

bool is_valid_event_name(std::string_view s) { return all_of_class(s, 128, is_handler_name_char); }

bool is_valid_task_name(std::string_view s) { return all_of_class(s, 128, is_handler_name_char); }

bool is_valid_topic(std::string_view s) { return all_of_class(s, 64, is_topic_char); }

bool is_valid_uuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash_position = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash_position ? s[i] != '-' : !is_lower_hex(s[i])) return false;
  }
  return true;
}

}  // namespace ebats
