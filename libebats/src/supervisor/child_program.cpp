#include "supervisor/child_program.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "supervisor/frame.h"

#ifndef EBATS_LIBEXEC_DIR
#define EBATS_LIBEXEC_DIR "/usr/libexec/ebats"
#endif

namespace ebats {

Result<ChildProgram> ChildProgram::open(const std::string& path) {
  if (::access(path.c_str(), X_OK) != 0) {
    return Status::not_found(path + ": " + std::strerror(errno));
  }
  auto fd = std::make_shared<UniqueFd>(::open(path.c_str(), O_PATH | O_CLOEXEC));
  if (!fd->valid()) return Status::io("cannot open " + path + ": " + std::strerror(errno));
  return ChildProgram(path, std::move(fd));
}

Result<ChildProgram> ChildProgram::locate() {
  std::vector<std::string> candidates;
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) candidates.push_back((self.parent_path() / kName).string());
  candidates.push_back(std::string(EBATS_LIBEXEC_DIR) + "/" + kName);
  std::string tried;
  for (const std::string& path : candidates) {
    auto program = open(path);
    if (program.ok()) return program;
    tried += (tried.empty() ? "" : "; ") + program.status().message();
  }
  return Status::not_found(std::string("cannot find ") + kName + ", the program worker children run (" + tried +
                           "); it is built and installed with the daemons");
}

std::vector<std::string> child_args(const Config& config) {
  return {"--plugins-dir", config.plugins_dir, "--max-frame", std::to_string(max_frame_bytes(config.max_message_bytes)),
          "--message-limit", std::to_string(config.result_message_bytes)};
}

}  // namespace ebats
