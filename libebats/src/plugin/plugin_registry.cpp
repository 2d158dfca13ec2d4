// PluginRegistry: directory and file checks, dlopen and the ABI handshake.
//
// Two things are never released once a library has been dlopen()ed:
// - the library itself (no dlclose): plugins live as long as their worker
//   child, so no code is ever unmapped under a running handler, static
//   destructors of a half-initialised plugin never run, and new plugin files
//   arrive through the workers' rolling restart (a fresh process);
// - the file descriptor it was loaded through. glibc recognises an already
//   loaded object by the name it was opened under ("/proc/self/fd/N"); if N
//   were closed and reused for another file, dlopen() of the new file would
//   silently return the old library. One fd per plugin is cheap.
#include "plugin/plugin_registry.h"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <exception>
#include <set>
#include <utility>

#include "ebats/envelope.h"
#include "plugin/elf_check.h"

namespace ebats {
namespace {

// The descriptor fields of ABI 1.0: everything up to and including shutdown.
constexpr size_t kV1DescriptorSize = offsetof(ebats_plugin, shutdown) + sizeof(ebats_plugin::shutdown);
// struct_size must cover at least abi_major before abi_major can be read.
constexpr size_t kAbiMajorEnd = offsetof(ebats_plugin, abi_major) + sizeof(ebats_plugin::abi_major);
// More tasks than this in one plugin means a garbage n_tasks, not a real plugin.
constexpr size_t kMaxTasksPerPlugin = 4096;
// Task names longer than this are invalid (is_valid_task_name); read no further.
constexpr size_t kMaxTaskNameLen = 128;

// Owns one file descriptor.
class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

std::string join_path(const std::string& dir, const std::string& name) {
  if (!dir.empty() && dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

// "0664"
std::string octal_mode(mode_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// "group-writable", "world-writable" or "group- and world-writable"; "" if neither.
std::string writable_by_others(mode_t mode) {
  const bool group = (mode & S_IWGRP) != 0;
  const bool world = (mode & S_IWOTH) != 0;
  if (group && world) return "group- and world-writable";
  if (group) return "group-writable";
  if (world) return "world-writable";
  return "";
}

const char* file_type_name(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISLNK(mode)) return "a symlink";
  return "not a regular file";
}

// Only the owner (root or the user this process runs as) may be able to
// change the code we are about to run.
bool trusted_owner(uid_t uid) { return uid == 0 || uid == ::geteuid(); }

std::string owner_refusal(const std::string& path, uid_t uid) {
  return path + ": owned by uid " + std::to_string(uid) + ", need root (uid 0) or the service user (uid " +
         std::to_string(::geteuid()) + "): chown root " + path;
}

// Shows untrusted bytes from a descriptor safely: quoted, non-printables escaped.
std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string errno_text(int err) { return std::strerror(err); }

// dlerror() talks about "/proc/self/fd/N"; the operator knows the real path.
std::string replace_all(std::string text, const std::string& from, const std::string& to) {
  for (size_t pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos + to.size())) {
    text.replace(pos, from.size(), to);
  }
  return text;
}

std::string directory_open_refusal(const std::string& dir, int err) {
  switch (err) {
    case ENOENT:
      return dir + ": plugin directory does not exist: create it (mkdir -p " + dir +
             ") or point plugins.dir at the directory holding the .so files";
    case ENOTDIR: return dir + ": is not a directory: point plugins.dir at the directory holding the .so files";
    case ELOOP:
      return dir + ": is a symlink: plugins.dir must be a real directory; point plugins.dir at the link's target";
    default:
      return dir + ": cannot open plugin directory: " + errno_text(err) + ": check that it exists and is readable";
  }
}

// Sorted names of the candidate files: `*.so`, not hidden. Errors are ignored
// here (a file that disappears is simply not loaded).
std::vector<std::string> list_plugin_names(int dir_fd) {
  std::vector<std::string> names;
  const int fd = ::fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return names;
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return names;
  }
  while (const dirent* e = ::readdir(d)) {
    const std::string_view name(e->d_name);
    if (name.empty() || name.front() == '.') continue;
    if (name.size() <= 3 || name.substr(name.size() - 3) != ".so") continue;
    names.emplace_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

// See plugin_in_lifecycle_call(): set for the duration of one init() or shutdown().
thread_local const std::string* t_lifecycle_plugin = nullptr;

class LifecycleCall {
 public:
  explicit LifecycleCall(const std::string* plugin) : saved_(t_lifecycle_plugin) { t_lifecycle_plugin = plugin; }
  ~LifecycleCall() { t_lifecycle_plugin = saved_; }
  LifecycleCall(const LifecycleCall&) = delete;
  LifecycleCall& operator=(const LifecycleCall&) = delete;

 private:
  const std::string* saved_;
};

}  // namespace

std::string_view plugin_in_lifecycle_call() {
  return t_lifecycle_plugin == nullptr ? std::string_view() : std::string_view(*t_lifecycle_plugin);
}

PluginRegistry PluginRegistry::load_directory(const std::string& dir, const ebats_host* host,
                                              const PluginSettings& settings) {
  PluginRegistry reg;
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir_fd) {
    int err = errno;
    // O_NOFOLLOW|O_DIRECTORY on a symlink reports ENOTDIR; say what it really is.
    struct stat lst {};
    if (err == ENOTDIR && ::lstat(dir.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) err = ELOOP;
    reg.refuse(dir, directory_open_refusal(dir, err));
    return reg;
  }
  struct stat st {};
  if (::fstat(dir_fd.get(), &st) != 0) {
    reg.refuse(dir, dir + ": cannot stat plugin directory: " + errno_text(errno));
    return reg;
  }
  if (const std::string w = writable_by_others(st.st_mode); !w.empty()) {
    reg.refuse(dir, dir + ": plugin directory is " + w + " (mode " + octal_mode(st.st_mode) +
                        "), so others could plant code in it; no plugin loaded: chmod go-w " + dir);
    return reg;
  }
  if (!trusted_owner(st.st_uid)) {
    reg.refuse(dir, owner_refusal(dir, st.st_uid) + "; no plugin loaded");
    return reg;
  }
  for (const std::string& name : list_plugin_names(dir_fd.get())) {
    reg.load_file(dir_fd.get(), dir, name, host, settings);
  }
  return reg;
}

void PluginRegistry::refuse(const std::string& file, std::string why) {
  errors_.push_back(PluginLoadError{file, std::move(why)});
}

void PluginRegistry::load_file(int dir_fd, const std::string& dir, const std::string& name, const ebats_host* host,
                               const PluginSettings& settings) {
  const std::string path = join_path(dir, name);
  const std::string symlink_refusal =
      path + ": is a symlink: plugins must be regular files; copy the file instead of linking";

  // Refuse FIFOs and devices before open() (opening them can block or have side effects).
  struct stat lst {};
  if (::fstatat(dir_fd, name.c_str(), &lst, AT_SYMLINK_NOFOLLOW) != 0) {
    refuse(path, path + ": cannot stat: " + errno_text(errno));
    return;
  }
  if (S_ISLNK(lst.st_mode)) {
    refuse(path, symlink_refusal);
    return;
  }
  if (!S_ISREG(lst.st_mode)) {
    refuse(path, path + ": is " + file_type_name(lst.st_mode) + ": plugins must be regular files");
    return;
  }

  // From here on, everything is judged on the open file, so a file swapped
  // after the checks cannot be the one that is loaded.
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  if (!fd) {
    const int err = errno;
    refuse(path, err == ELOOP ? symlink_refusal : path + ": cannot open: " + errno_text(err));
    return;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    refuse(path, path + ": cannot stat: " + errno_text(errno));
    return;
  }
  if (!S_ISREG(st.st_mode)) {
    refuse(path, path + ": is " + file_type_name(st.st_mode) + ": plugins must be regular files");
    return;
  }
  if (const std::string w = writable_by_others(st.st_mode); !w.empty()) {
    refuse(path, path + ": is " + w + " (mode " + octal_mode(st.st_mode) +
                     "), so others could replace the code: chmod go-w " + path);
    return;
  }
  if (!trusted_owner(st.st_uid)) {
    refuse(path, owner_refusal(path, st.st_uid));
    return;
  }

  if (const std::string why = elf_incomplete(fd.get(), st.st_size); !why.empty()) {
    refuse(path, path + ": " + why);
    return;
  }

  const std::string proc_path = "/proc/self/fd/" + std::to_string(fd.get());
  ::dlerror();
  void* lib = ::dlopen(proc_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) {
    const char* err = ::dlerror();
    refuse(path, path + ": cannot load: " + replace_all(err ? err : "unknown dlopen error", proc_path, path) +
                     ": check its dependencies with ldd " + path);
    return;
  }
  fd.release();  // kept open for the life of the process: see the top of this file

  ::dlerror();
  void* sym = ::dlsym(lib, EBATS_PLUGIN_ENTRY_SYMBOL);
  if (sym == nullptr) {
    refuse(path, path + ": no symbol " EBATS_PLUGIN_ENTRY_SYMBOL
                        ": did you forget EBATS_PLUGIN(...) / EBATS_PLUGIN_EXPORT? (check with nm -D " +
                     path + ")");
    return;
  }
  const auto entry = reinterpret_cast<ebats_plugin_entry_fn>(sym);

  const ebats_plugin* d = nullptr;
  try {
    d = entry();
  } catch (...) {
    refuse(path, path + ": " EBATS_PLUGIN_ENTRY_SYMBOL "() threw an exception: it must only return its descriptor");
    return;
  }
  if (d == nullptr) {
    refuse(path, path + ": " EBATS_PLUGIN_ENTRY_SYMBOL
                        "() returned NULL: it must return a pointer to the plugin's static const ebats_plugin");
    return;
  }

  // The handshake. Nothing but struct_size and abi_major is read until both
  // are known to be compatible: other fields may not exist in that layout.
  const std::string need_size = std::to_string(kV1DescriptorSize);
  const std::string size_refusal = path + ": descriptor struct_size " + std::to_string(d->struct_size) +
                                   ", need at least " + need_size +
                                   " (the ABI 1.0 fields): set struct_size = sizeof(ebats_plugin) and rebuild "
                                   "against ebats 1.x headers";
  if (d->struct_size < kAbiMajorEnd) {
    refuse(path, size_refusal);
    return;
  }
  if (d->abi_major != EBATS_ABI_MAJOR) {
    refuse(path, path + ": abi_major " + std::to_string(d->abi_major) + ", need " + std::to_string(EBATS_ABI_MAJOR) +
                     ": rebuild against ebats " + std::to_string(EBATS_ABI_MAJOR) + ".x headers");
    return;
  }
  if (d->struct_size < kV1DescriptorSize) {
    refuse(path, size_refusal);
    return;
  }
  // A newer abi_minor is fine: minor versions only append fields, and this
  // host reads only the ABI 1.0 fields, which struct_size was checked to cover.

  if (d->name == nullptr || d->name[0] == '\0') {
    refuse(path, path + ": descriptor name is NULL or empty: set .name to the plugin's short name, e.g. \"shop\"");
    return;
  }
  if (d->version == nullptr) {
    refuse(path, path + ": descriptor version is NULL: set .version, e.g. \"1.0.0\"");
    return;
  }
  PluginInfo info;
  info.file = path;
  info.name = d->name;
  info.version = d->version;
  info.abi_major = d->abi_major;
  info.abi_minor = d->abi_minor;

  if (d->n_tasks == 0 || d->tasks == nullptr) {
    refuse(path, path + ": plugin " + quoted(info.name) + " registers no tasks (tasks " +
                     (d->tasks ? "set" : "NULL") + ", n_tasks " + std::to_string(d->n_tasks) +
                     "): list at least one {name, handler}");
    return;
  }
  if (d->n_tasks > kMaxTasksPerPlugin) {
    refuse(path, path + ": n_tasks " + std::to_string(d->n_tasks) + " is implausible (at most " +
                     std::to_string(kMaxTasksPerPlugin) + "): set n_tasks to the length of the tasks array");
    return;
  }
  std::set<std::string, std::less<>> seen;
  for (size_t i = 0; i < d->n_tasks; ++i) {
    const ebats_task_def& def = d->tasks[i];
    const std::string where = path + ": task #" + std::to_string(i);
    if (def.name == nullptr) {
      refuse(path, where + " has a NULL name: every task needs a name");
      return;
    }
    const std::string_view task(def.name, ::strnlen(def.name, kMaxTaskNameLen + 1));
    if (!is_valid_task_name(task)) {
      refuse(path, where + " name " + quoted(task.substr(0, kMaxTaskNameLen)) +
                       (task.size() > kMaxTaskNameLen ? "... (too long)" : "") +
                       " is invalid: expected [A-Za-z0-9_.:-]{1,128}");
      return;
    }
    if (def.handler == nullptr) {
      refuse(path, where + " " + quoted(task) + " has a NULL handler: set its handler function");
      return;
    }
    if (!seen.emplace(task).second) {
      refuse(path, where + " " + quoted(task) + " is listed twice in this plugin: remove one entry");
      return;
    }
    if (const auto other = task_files_.find(task); other != task_files_.end()) {
      refuse(path, path + ": task " + quoted(task) + " is already registered by " + other->second +
                       ": task names must be unique across plugins; rename the task or remove one of the files");
      return;
    }
    info.tasks.emplace_back(task);
  }

  void* state = nullptr;
  if (d->init != nullptr) {
    static const std::string kNoSettings = "{}";
    const auto configured = settings.find(info.name);
    const std::string& settings_json = configured != settings.end() ? configured->second : kNoSettings;
    int rc = 0;
    try {
      const LifecycleCall naming(&info.name);
      rc = d->init(host, settings_json.c_str(), settings_json.size(), &state);
    } catch (const std::exception& e) {
      refuse(path, path + ": init() threw an exception: " + e.what() + ": plugins must not throw across the C ABI");
      return;
    } catch (...) {
      refuse(path, path + ": init() threw an exception: plugins must not throw across the C ABI");
      return;
    }
    if (rc != 0) {
      refuse(path, path + ": init() returned " + std::to_string(rc) +
                       ", need 0: the plugin refused to start; see its log lines above and its configuration");
      return;
    }
  }

  for (size_t i = 0; i < d->n_tasks; ++i) {
    const std::string& task = info.tasks[i];
    handlers_.emplace(task, TaskHandler{d->tasks[i].handler, state, info.name});
    task_files_.emplace(task, path);
  }
  loaded_.push_back(Loaded{d->shutdown, state});
  plugins_.push_back(std::move(info));
}

PluginRegistry::PluginRegistry(PluginRegistry&& other) noexcept
    : plugins_(std::move(other.plugins_)),
      errors_(std::move(other.errors_)),
      loaded_(std::move(other.loaded_)),
      handlers_(std::move(other.handlers_)),
      task_files_(std::move(other.task_files_)) {
  other.loaded_.clear();  // the moved-from registry must not shut anything down
  other.plugins_.clear();
  other.handlers_.clear();
  other.task_files_.clear();
}

PluginRegistry& PluginRegistry::operator=(PluginRegistry&& other) noexcept {
  if (this != &other) {
    shutdown_all();
    plugins_ = std::move(other.plugins_);
    errors_ = std::move(other.errors_);
    loaded_ = std::move(other.loaded_);
    handlers_ = std::move(other.handlers_);
    task_files_ = std::move(other.task_files_);
    other.loaded_.clear();
    other.plugins_.clear();
    other.handlers_.clear();
    other.task_files_.clear();
  }
  return *this;
}

PluginRegistry::~PluginRegistry() { shutdown_all(); }

void PluginRegistry::shutdown_all() noexcept {
  for (size_t i = loaded_.size(); i-- > 0;) {
    const Loaded* it = &loaded_[i];
    if (it->shutdown == nullptr) continue;
    try {
      const LifecycleCall naming(i < plugins_.size() ? &plugins_[i].name : nullptr);
      it->shutdown(it->state);
    } catch (...) {
      // A plugin that throws from shutdown() is buggy, but the process is
      // exiting anyway; the remaining plugins still get their shutdown().
    }
  }
  loaded_.clear();
}

const TaskHandler* PluginRegistry::find(std::string_view task) const {
  const auto it = handlers_.find(task);
  return it == handlers_.end() ? nullptr : &it->second;
}

std::vector<std::string> PluginRegistry::task_names() const {
  std::vector<std::string> names;
  names.reserve(handlers_.size());
  for (const auto& [task, handler] : handlers_) names.push_back(task);
  return names;
}

}  // namespace ebats
