// UUIDs: v4 for ids without a natural key, v7 for time-ordered ids, v8 for
// task ids (deterministic and time-ordered).
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include <boost/random/mersenne_twister.hpp>
#include <boost/uuid/uuid.hpp>
#include <boost/uuid/uuid_generators.hpp>

// SHA1_Init/Update/Final are deprecated in OpenSSL 3 in favour of EVP, and
// kept here on purpose: EVP (and the one-shot SHA1(), which goes through it)
// fetches the algorithm from the default provider on every call and loads the
// provider's tables on the first, 0.35 us per id and 2 MiB more RSS in every
// daemon that routes, against 0.09 us and 0.1 MiB (bench/notes.md).
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <cstdint>
#include <system_error>

#include "ebats/envelope.h"
#include "envelope/uuid_v5.h"

namespace ebats {
namespace {

// Lowercase 8-4-4-4-12 text of a UUID.
std::string to_text(const boost::uuids::uuid& u) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s(36, '-');
  size_t pos = 0;
  for (size_t i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) ++pos;  // keep the dash
    s[pos++] = kHex[u.data[i] >> 4];
    s[pos++] = kHex[u.data[i] & 0x0F];
  }
  return s;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Parses lowercase 8-4-4-4-12 text (no exceptions, unlike boost's string_generator).
bool from_text(std::string_view text, boost::uuids::uuid* u) {
  if (!is_valid_uuid(text)) return false;
  size_t byte = 0;
  for (size_t i = 0; i < text.size(); i += 2) {
    if (text[i] == '-') ++i;
    u->data[byte++] = static_cast<uint8_t>(hex_value(text[i]) << 4 | hex_value(text[i + 1]));
  }
  return byte == 16;
}

// Fills `out` with `n` bytes from the kernel's random source (getrandom,
// retried when a signal interrupts it or it returns fewer bytes).
void read_os_random(void* out, size_t n) {
  auto* p = static_cast<unsigned char*>(out);
  while (n > 0) {
    const ssize_t got = ::getrandom(p, n, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      // Linux >= 3.17 does not refuse once booted: nothing to fall back on.
      throw std::system_error(errno, std::generic_category(), "getrandom() for the UUID generator");
    }
    p += got;
    n -= static_cast<size_t>(got);
  }
}

// A per-thread source of random UUIDs: a Mersenne Twister seeded once from
// the OS, that notices fork().
//
// Why per thread: boost::uuids::random_generator (the "pure" one) asks the
// kernel for 16 bytes on every call (a getrandom syscall, ~0.4 us here); a
// Mersenne Twister seeded once per thread costs ~30 ns per id afterwards,
// without locks. Thread-local rather than a shared object because a
// generator is not thread-safe and new_uuid_v4() takes no context argument;
// the state is private to this file and never observable.
//
// Why the seed is read here: boost's own seeding of random_generator_mt19937
// asks the kernel for each of the engine's 624 state words separately, 624
// system calls, and a process that publishes one event (`ebatsctl publish`)
// paid them between stamping the event and storing it (bench/notes.md). One
// getrandom() of the whole state gives the engine the same entropy.
//
// Why fork matters: a child forked after its parent drew ids would repeat the
// parent's sequence, and a duplicate event id is silently deduplicated on
// SQLite (an event lost). The "seeded" mark lives in a page advised
// MADV_WIPEONFORK, which the kernel zeroes in every child (whatever clone()
// variant made it), so the child reseeds. If that advice is refused (kernels
// before 4.14), the mark falls back to comparing getpid() on every call.
//
// v4 ids are unique, not secret: Mersenne Twister output is predictable to
// whoever sees enough of it; nothing in ebats uses an id as a credential.
class ThreadUuidSource {
 public:
  ThreadUuidSource() {
    const long page = sysconf(_SC_PAGESIZE);
    page_size_ = page > 0 ? static_cast<size_t>(page) : 4096;
    void* p = mmap(nullptr, page_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    if (madvise(p, page_size_, MADV_WIPEONFORK) != 0) {
      munmap(p, page_size_);
      return;
    }
    seeded_mark_ = static_cast<volatile unsigned char*>(p);
  }
  ~ThreadUuidSource() {
    if (seeded_mark_ != nullptr) munmap(const_cast<unsigned char*>(seeded_mark_), page_size_);
  }
  ThreadUuidSource(const ThreadUuidSource&) = delete;
  ThreadUuidSource& operator=(const ThreadUuidSource&) = delete;

  boost::uuids::uuid next() {
    if (!seeded_in_this_process()) reseed();
    return generator_();
  }

 private:
  bool seeded_in_this_process() const {
    if (!seeded_) return false;
    if (seeded_mark_ != nullptr) return *seeded_mark_ != 0;
    return seeded_pid_ == getpid();
  }
  void reseed() {
    std::array<uint32_t, boost::random::mt19937::state_size> state;
    read_os_random(state.data(), sizeof state);
    auto first = state.begin();
    engine_.seed(first, state.end());
    seeded_ = true;
    if (seeded_mark_ != nullptr) *seeded_mark_ = 1;
    seeded_pid_ = getpid();
  }

  boost::random::mt19937 engine_;  // seeded by reseed() before the first id
  boost::uuids::basic_random_generator<boost::random::mt19937> generator_{&engine_};  // draws from engine_
  bool seeded_ = false;
  volatile unsigned char* seeded_mark_ = nullptr;  // one page, zeroed in forked children
  size_t page_size_ = 0;
  pid_t seeded_pid_ = 0;
};

// The calling thread's source, shared by v4 and v7 ids (one seeding per thread).
ThreadUuidSource& thread_uuid_source() {
  thread_local ThreadUuidSource source;
  return source;
}

// UUIDv5 of `name` in `ns` (RFC 9562 §5.5): the first 16 bytes of SHA-1(ns,
// name), version and variant set. OpenSSL's low-level SHA-1 (the SHA
// extensions where the CPU has them) takes a tenth of the time of boost's, on
// every task a scheduler routes (bench/notes.md).
boost::uuids::uuid v5_of(const boost::uuids::uuid& ns, std::string_view name) {
  SHA_CTX sha;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1_Init(&sha);
  SHA1_Update(&sha, ns.data, sizeof ns.data);
  SHA1_Update(&sha, name.data(), name.size());
  SHA1_Final(digest, &sha);
  boost::uuids::uuid u{};
  std::memcpy(u.data, digest, sizeof u.data);
  u.data[6] = static_cast<uint8_t>(0x50 | (u.data[6] & 0x0F));  // version 5
  u.data[8] = static_cast<uint8_t>(0x80 | (u.data[8] & 0x3F));  // RFC 9562 variant
  return u;
}

}  // namespace

std::string uuid_v5(std::string_view namespace_uuid, std::string_view name) {
  boost::uuids::uuid ns{};
  if (!from_text(namespace_uuid, &ns)) return std::string();
  return to_text(v5_of(ns, name));
}

std::string new_uuid_v4() {
  return to_text(thread_uuid_source().next());
}

std::string new_uuid_v7(WallMs now) {
  // The counter orders the ids one thread makes within a millisecond; the 62
  // random bits keep them unique (across threads and forks too), so a counter
  // held at its maximum costs order, never uniqueness.
  struct Counter {
    WallMs ms = -1;
    uint16_t value = 0;
  };
  thread_local Counter counter;
  if (counter.ms != now) {
    counter.ms = now;
    counter.value = 0;
  } else if (counter.value < 0x0FFF) {
    ++counter.value;
  }
  boost::uuids::uuid u = thread_uuid_source().next();  // random bits, RFC 9562 variant already set
  const uint64_t ms = static_cast<uint64_t>(now);
  for (int i = 0; i < 6; ++i) u.data[i] = static_cast<uint8_t>(ms >> (40 - 8 * i));
  u.data[6] = static_cast<uint8_t>(0x70 | (counter.value >> 8));  // version 7, counter bits 11..8
  u.data[7] = static_cast<uint8_t>(counter.value & 0xFF);         // counter bits 7..0
  return to_text(u);
}

std::string task_uuid(std::string_view event_id, std::string_view event, std::string_view task,
                      std::string_view topic) {
  static const boost::uuids::uuid kNamespace = [] {
    boost::uuids::uuid ns{};
    from_text(kEbatsUuidNamespace, &ns);
    return ns;
  }();
  std::string name;
  name.reserve(event_id.size() + event.size() + task.size() + topic.size() + 3);
  name.append(event_id).append(1, '\n').append(event).append(1, '\n').append(task).append(1, '\n').append(topic);
  boost::uuids::uuid u = v5_of(kNamespace, name);  // its bytes 8-15: 62 bits of SHA-1, RFC 9562 variant set
  boost::uuids::uuid event_uuid{};
  if (from_text(event_id, &event_uuid)) {
    for (int i = 0; i < 8; ++i) u.data[i] = event_uuid.data[i];  // a v7's millisecond and counter
  }
  u.data[6] = static_cast<uint8_t>(0x80 | (u.data[6] & 0x0F));  // version 8
  return to_text(u);
}

}  // namespace ebats
