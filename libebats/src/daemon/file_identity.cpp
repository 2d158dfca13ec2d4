#include "daemon/file_identity.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace ebats {

Result<FileIdentity> FileIdentity::of(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Status::io("cannot stat " + path + ": " + std::strerror(errno));
  return FileIdentity(path, st.st_dev, st.st_ino);
}

Status FileIdentity::unchanged() const {
  struct stat st {};
  const char* what = nullptr;
  if (::stat(path_.c_str(), &st) != 0) {
    if (errno != ENOENT) return Status();  // cannot tell (a permission change): keep going
    what = "was deleted";
  } else if (st.st_dev != device_ || st.st_ino != inode_) {
    what = "was replaced by another file";
  } else {
    return Status();
  }
  return Status::io("the database " + path_ + " " + what +
                    " while this daemon had it open; what it held is gone from that path. Stop every ebats "
                    "daemon, restore the file (or create a new one with `ebatsctl setup`), then start them again");
}

}  // namespace ebats
