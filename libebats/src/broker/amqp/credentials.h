// The broker password: from broker.password_file, else from the environment
// variable EBATS_BROKER_PASSWORD, never from the URL or the YAML.
#pragma once

#include <string>

#include "ebats/status.h"

namespace ebats {
namespace amqp {

constexpr const char* kPasswordVariable = "EBATS_BROKER_PASSWORD";

// Reads the password file (its first line, without the line end). The file
// must be a regular file that only its owner can write and nobody but its
// owner and group can read (0600 or 0640); anything else is refused with the
// fix. With no file named, the environment variable is used; with neither,
// the password is empty (and the broker will say no).
Result<std::string> read_password(const std::string& password_file);

}  // namespace amqp
}  // namespace ebats
