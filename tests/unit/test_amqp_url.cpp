// The broker URL (parse_amqp_url, AmqpEndpoint::display) and the broker
// password (read_password): defaults, percent-decoding, IPv6, a password in
// the URL refused without echoing it, and the password file's checks (mode,
// symlink, empty, not a file) with $EBATS_BROKER_PASSWORD as the fallback.
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <optional>
#include <string>

#include "broker/amqp/amqp_url.h"
#include "broker/amqp/credentials.h"
#include "ebats/status.h"
#include "support/temp_dir.h"

using ebats::amqp::AmqpEndpoint;
using ebats::amqp::kPasswordVariable;
using ebats::amqp::parse_amqp_url;
using ebats::amqp::read_password;
using ebats::test::TempDir;
using Catch::Matchers::Contains;

namespace {

AmqpEndpoint parsed(const std::string& url) {
  auto e = parse_amqp_url(url);
  INFO(url << ": " << e.status().to_string());
  REQUIRE(e.ok());
  return *e;
}

std::string refusal(const std::string& url) {
  auto e = parse_amqp_url(url);
  INFO(url);
  REQUIRE_FALSE(e.ok());
  CHECK(e.status().code() == ebats::StatusCode::invalid_argument);
  return e.status().message();
}

// Sets (or unsets) $EBATS_BROKER_PASSWORD for one test and puts back what
// was there.
class PasswordVariable {
 public:
  explicit PasswordVariable(const char* value) {
    if (const char* old = ::getenv(kPasswordVariable)) saved_ = std::string(old);
    if (value) {
      ::setenv(kPasswordVariable, value, 1);
    } else {
      ::unsetenv(kPasswordVariable);
    }
  }
  ~PasswordVariable() {
    if (saved_) {
      ::setenv(kPasswordVariable, saved_->c_str(), 1);
    } else {
      ::unsetenv(kPasswordVariable);
    }
  }
  PasswordVariable(const PasswordVariable&) = delete;
  PasswordVariable& operator=(const PasswordVariable&) = delete;

 private:
  std::optional<std::string> saved_;
};

std::string password_file(const TempDir& dir, const std::string& text, mode_t mode) {
  const std::string path = dir.write("password", text);
  REQUIRE(::chmod(path.c_str(), mode) == 0);
  return path;
}

}  // namespace

// ------------------------------------------------------------------ URL

TEST_CASE("amqp url: defaults: guest, port 5672 (amqps 5671), vhost /", "[amqp][url]") {
  AmqpEndpoint e = parsed("amqp://rabbit.example");
  CHECK_FALSE(e.tls);
  CHECK(e.user == "guest");
  CHECK(e.host == "rabbit.example");
  CHECK(e.port == 5672);
  CHECK(e.vhost == "/");

  e = parsed("amqps://rabbit.example");
  CHECK(e.tls);
  CHECK(e.port == 5671);
  CHECK(e.vhost == "/");

  // An empty path is the vhost "/" too, not a vhost named "".
  CHECK(parsed("amqp://rabbit.example/").vhost == "/");
  CHECK(parsed("amqps://rabbit.example:5671/").vhost == "/");
}

TEST_CASE("amqp url: user, port and a percent-decoded vhost", "[amqp][url]") {
  AmqpEndpoint e = parsed("amqp://ebats@rabbit.example:5673/prod");
  CHECK(e.user == "ebats");
  CHECK(e.host == "rabbit.example");
  CHECK(e.port == 5673);
  CHECK(e.vhost == "prod");

  CHECK(parsed("amqp://rabbit.example/%2F").vhost == "/");
  CHECK(parsed("amqp://rabbit.example/%2f").vhost == "/");
  CHECK(parsed("amqp://rabbit.example/%2Fprod").vhost == "/prod");
  CHECK(parsed("amqp://rabbit.example/a%2Fb").vhost == "a/b");
  CHECK(parsed("amqp://al%40ice@rabbit.example").user == "al@ice");
  CHECK(parsed("amqp://rabbit.example:65535").port == 65535);
}

TEST_CASE("amqp url: an IPv6 address in brackets", "[amqp][url]") {
  AmqpEndpoint e = parsed("amqp://[::1]");
  CHECK(e.host == "::1");
  CHECK(e.port == 5672);
  e = parsed("amqps://ebats@[2001:db8::7]:5999/v");
  CHECK(e.host == "2001:db8::7");
  CHECK(e.port == 5999);
  CHECK(e.user == "ebats");
  CHECK(e.vhost == "v");
  CHECK(e.display() == "amqps://ebats@[2001:db8::7]:5999/v");
}

TEST_CASE("amqp url: a password in the URL is refused, says where it goes, and is never echoed", "[amqp][url]") {
  for (const std::string url : {"amqp://ebats:S3cr3t-pw@rabbit.example/prod", "amqps://ebats:S3cr3t-pw@rabbit.example",
                                "amqp://:S3cr3t-pw@rabbit.example", "amqp://ebats:S3cr3t-pw@[::1]:5672/",
                                "amqp://ebats:S3cr3t-pw@rabbit.example/v@x"}) {
    const std::string message = refusal(url);
    INFO(message);
    CHECK_THAT(message, !Contains("S3cr3t"));
    CHECK_THAT(message, Contains("password_file"));
    CHECK_THAT(message, Contains("EBATS_BROKER_PASSWORD"));
  }
  // Even an empty password.
  CHECK_THAT(refusal("amqp://ebats:@rabbit.example"), Contains("password"));
  // A password with a '/' in it makes no valid URL: refused without the password either.
  CHECK_THAT(refusal("amqp://ebats:pa/S3cr3t@rabbit.example/"), !Contains("S3cr3t"));
  // A ':' in the user name, percent-encoded, is no password.
  CHECK(parsed("amqp://a%3Ab@rabbit.example/v%40x").user == "a:b");
  CHECK(parsed("amqp://a%3Ab@rabbit.example/v%40x").vhost == "v@x");
}

TEST_CASE("amqp url: bad ports and other schemes are refused", "[amqp][url]") {
  for (const std::string url : {"amqp://rabbit.example:0/", "amqp://rabbit.example:65536/",
                                "amqp://rabbit.example:99999", "amqp://rabbit.example:abc/",
                                "amqp://rabbit.example:-1/", "amqp://rabbit.example:/"}) {
    CHECK_THAT(refusal(url), Contains("port") || Contains("not a valid AMQP URL"));
  }
  for (const std::string url : {"http://rabbit.example", "sqlite:///var/lib/ebats.db", "rabbit.example",
                                "AMQP://rabbit.example", "amqpx://rabbit.example", ""}) {
    CHECK_THAT(refusal(url), Contains("amqp://"));
  }
  CHECK_THAT(refusal("amqp://rabbit.example/a/b"), Contains("not a valid AMQP URL"));
}

TEST_CASE("amqp url: display() names user, host, port and vhost, never a password", "[amqp][url]") {
  CHECK(parsed("amqp://rabbit.example").display() == "amqp://guest@rabbit.example:5672/");
  CHECK(parsed("amqp://rabbit.example/%2F").display() == "amqp://guest@rabbit.example:5672/");
  CHECK(parsed("amqps://ebats@rabbit.example/prod").display() == "amqps://ebats@rabbit.example:5671/prod");
  CHECK(parsed("amqp://[::1]:5673").display() == "amqp://guest@[::1]:5673/");
  // What the URL percent-encoded, display() does too: a user "a:b" must not
  // read as user "a" with password "b", a vhost "/prod" not as "//prod".
  CHECK(parsed("amqp://a%3Ab@rabbit.example").display() == "amqp://a%3Ab@rabbit.example:5672/");
  CHECK(parsed("amqp://rabbit.example/%2Fprod").display() == "amqp://guest@rabbit.example:5672/%2Fprod");
  CHECK(parsed("amqp://rabbit.example/a%2Fb").display() == "amqp://guest@rabbit.example:5672/a%2Fb");

  AmqpEndpoint e;  // the defaults
  CHECK(e.display() == "amqp://guest@localhost:5672/");
}

TEST_CASE("amqp url: display() reads back as the same endpoint", "[amqp][url]") {
  for (const std::string url :
       {"amqp://rabbit.example", "amqps://ebats@rabbit.example:5999/prod", "amqp://[::1]", "amqp://a%3Ab@h/%2Fprod",
        "amqp://al%40ice@h/v%20x", "amqp://h/a%2Fb", "amqp://h/~tilde-dash_under.dot"}) {
    const AmqpEndpoint e = parsed(url);
    INFO(url << " -> " << e.display());
    const AmqpEndpoint again = parsed(e.display());
    CHECK(again.tls == e.tls);
    CHECK(again.user == e.user);
    CHECK(again.host == e.host);
    CHECK(again.port == e.port);
    CHECK(again.vhost == e.vhost);
  }
}

// ------------------------------------------------------------- password

TEST_CASE("amqp password: the first line of a 0600 file, without its line end", "[amqp][password]") {
  TempDir dir;
  PasswordVariable variable("from-the-environment");  // the file wins
  auto p = read_password(password_file(dir, "s3cret pw \n", 0600));
  INFO(p.status().to_string());
  REQUIRE(p.ok());
  CHECK(*p == "s3cret pw ");  // spaces are the password's own

  p = read_password(password_file(dir, "first\r\nsecond line\n", 0600));
  REQUIRE(p.ok());
  CHECK(*p == "first");

  p = read_password(password_file(dir, "no newline at all", 0400));
  REQUIRE(p.ok());
  CHECK(*p == "no newline at all");
}

TEST_CASE("amqp password: a 0640 file is accepted (readable by the group)", "[amqp][password]") {
  TempDir dir;
  auto p = read_password(password_file(dir, "group-readable\n", 0640));
  INFO(p.status().to_string());
  REQUIRE(p.ok());
  CHECK(*p == "group-readable");
}

TEST_CASE("amqp password: a file others can read, or the group write, is refused with its mode and the fix",
          "[amqp][password]") {
  TempDir dir;
  for (const mode_t mode : {mode_t{0644}, mode_t{0660}, mode_t{0604}, mode_t{0602}, mode_t{0670}, mode_t{0700}}) {
    char octal[8];
    std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode));
    INFO("mode " << octal);
    const std::string path = password_file(dir, "s3cret\n", mode);
    auto p = read_password(path);
    if (mode == 0700) {  // an owner-only file, executable or not, is fine
      CHECK(p.ok());
      continue;
    }
    REQUIRE_FALSE(p.ok());
    CHECK(p.status().code() == ebats::StatusCode::invalid_argument);
    const std::string& message = p.status().message();
    CHECK_THAT(message, Contains(path));
    CHECK_THAT(message, Contains(std::string("mode ") + octal));
    CHECK_THAT(message, Contains("chmod 0600"));
    CHECK_THAT(message, !Contains("s3cret"));
  }
}

TEST_CASE("amqp password: a symbolic link is refused, even to a good file", "[amqp][password]") {
  TempDir dir;
  const std::string target = password_file(dir, "s3cret\n", 0600);
  const std::string link = dir.file("link");
  REQUIRE(::symlink(target.c_str(), link.c_str()) == 0);
  auto p = read_password(link);
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.status().message(), Contains(link));
  CHECK_THAT(p.status().message(), Contains("is a symbolic link"));
  CHECK_THAT(p.status().message(), Contains("name the file it points to"));
  CHECK_THAT(p.status().message(), !Contains("s3cret"));
}

TEST_CASE("amqp password: an empty file, a missing file, a folder and a FIFO are refused", "[amqp][password]") {
  TempDir dir;
  SECTION("empty") {
    const std::string path = password_file(dir, "", 0600);
    auto p = read_password(path);
    REQUIRE_FALSE(p.ok());
    CHECK_THAT(p.status().message(), Contains("is empty"));
  }
  SECTION("an empty first line") {
    auto p = read_password(password_file(dir, "\nsecond line\n", 0600));
    REQUIRE_FALSE(p.ok());
    CHECK_THAT(p.status().message(), Contains("is empty"));
  }
  SECTION("missing: not the environment variable instead") {
    PasswordVariable variable("from-the-environment");
    auto p = read_password(dir.file("absent"));
    REQUIRE_FALSE(p.ok());
    CHECK_THAT(p.status().message(), Contains(dir.file("absent")));
    CHECK_THAT(p.status().message(), Contains("No such file"));
  }
  SECTION("longer than 64 KiB") {
    auto p = read_password(password_file(dir, std::string(70'000, 'x') + "\n", 0600));
    REQUIRE_FALSE(p.ok());
    CHECK_THAT(p.status().message(), Contains("too long"));
  }
  SECTION("a folder") {
    auto p = read_password(dir.path());
    REQUIRE_FALSE(p.ok());
    CHECK_THAT(p.status().message(), Contains("not a regular file"));
  }
  SECTION("a FIFO: refused at once, not waiting for a writer") {
    const std::string fifo = dir.file("fifo");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    auto p = read_password(fifo);
    REQUIRE_FALSE(p.ok());
    CHECK_THAT(p.status().message(), Contains("not a regular file"));
  }
}

TEST_CASE("amqp password: with no file named, $EBATS_BROKER_PASSWORD, else empty", "[amqp][password]") {
  {
    PasswordVariable variable("env-s3cret");
    auto p = read_password("");
    REQUIRE(p.ok());
    CHECK(*p == "env-s3cret");
  }
  {
    PasswordVariable variable(nullptr);
    auto p = read_password("");
    REQUIRE(p.ok());
    CHECK(p->empty());
  }
}
