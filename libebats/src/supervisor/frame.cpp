#include "supervisor/frame.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ebats {

FieldWriter::FieldWriter(std::string& out, FrameType type) : out_(out), start_(out.size()) {
  uint32_t placeholder = 0;
  raw(&placeholder, 4);
  u8(static_cast<uint8_t>(type));
}

FieldWriter& FieldWriter::str(std::string_view s) {
  u32(static_cast<uint32_t>(s.size()));
  out_.append(s.data(), s.size());
  return *this;
}

void FieldWriter::finish() {
  uint32_t len = static_cast<uint32_t>(out_.size() - start_ - 4);
  std::memcpy(&out_[start_], &len, 4);
}

std::string_view FieldReader::str() {
  uint32_t n = u32();
  if (failed_ || p_.size() < n) {
    failed_ = true;
    return {};
  }
  std::string_view s = p_.substr(0, n);
  p_.remove_prefix(n);
  return s;
}

ssize_t FrameBuffer::read_from(int fd) {
  if (pos_ == end_) {
    pos_ = end_ = 0;
  } else if (pos_ > (1u << 20)) {
    std::memmove(&buf_[0], &buf_[pos_], end_ - pos_);  // the unread bytes to the front
    end_ -= pos_;
    pos_ = 0;
  }
  if (buf_.size() < end_ + kReadChunk) buf_.resize(end_ + kReadChunk);  // grows only while frames are large
  ssize_t n;
  do {
    n = ::read(fd, &buf_[end_], kReadChunk);
  } while (n < 0 && errno == EINTR);
  if (n > 0) end_ += static_cast<size_t>(n);
  return n;
}

std::optional<FrameBuffer::Frame> FrameBuffer::next() {
  size_t avail = end_ - pos_;
  if (avail < 5) return std::nullopt;
  uint32_t len;
  std::memcpy(&len, buf_.data() + pos_, 4);
  if (len < 1 || len > max_frame_) {
    oversized_ = true;
    return std::nullopt;
  }
  if (avail < 4 + static_cast<size_t>(len)) return std::nullopt;
  Frame f{static_cast<FrameType>(static_cast<uint8_t>(buf_[pos_ + 4])),
          std::string_view(buf_.data() + pos_ + 5, len - 1)};
  pos_ += 4 + len;
  return f;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

namespace {

void write_list(FieldWriter& w, const std::vector<std::string>& items) {
  w.u32(static_cast<uint32_t>(items.size()));
  for (const auto& item : items) w.str(item);
}

void read_list(FieldReader& r, std::vector<std::string>* items) {
  const uint32_t n = r.u32();
  for (uint32_t i = 0; i < n && !r.failed(); ++i) items->emplace_back(r.str());
}

}  // namespace

void write_ready_frame(std::string& out, const ReadyReport& report) {
  FieldWriter w(out, FrameType::ready);
  write_list(w, report.tasks);
  write_list(w, report.errors);
  write_list(w, report.plugins);
  write_list(w, report.versions);
  write_list(w, report.abis);
  write_list(w, report.files);
  w.finish();
}

bool read_ready_payload(std::string_view payload, ReadyReport* report) {
  FieldReader r(payload);
  read_list(r, &report->tasks);
  read_list(r, &report->errors);
  read_list(r, &report->plugins);
  if (!r.at_end()) {  // added later: a READY frame without them is still valid
    read_list(r, &report->versions);
    read_list(r, &report->abis);
    read_list(r, &report->files);
  }
  return !r.failed();
}

void write_settings_frame(std::string& out, const PluginSettings& settings) {
  FieldWriter w(out, FrameType::settings);
  w.u32(static_cast<uint32_t>(settings.size()));
  for (const auto& [plugin, json] : settings) w.str(plugin).str(json);
  w.finish();
}

bool read_settings_payload(std::string_view payload, PluginSettings* settings) {
  FieldReader r(payload);
  const uint32_t n = r.u32();
  for (uint32_t i = 0; i < n && !r.failed(); ++i) {
    std::string plugin(r.str());
    (*settings)[plugin] = std::string(r.str());
  }
  return !r.failed();
}

}  // namespace ebats
