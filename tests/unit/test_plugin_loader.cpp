// PluginRegistry: the good test plugins load; every refusal names the file,
// what was expected and found, and the fix; one bad plugin never stops the others.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "ebats/plugin.h"
#include "plugin/plugin_registry.h"
#include "support/temp_dir.h"

namespace fs = std::filesystem;
using ebats::PluginRegistry;

namespace {

const std::string kGoodDir = EBATS_TEST_PLUGIN_DIR;
const std::string kBadDir = EBATS_TEST_BAD_PLUGIN_DIR;
const std::string kRawDir = std::string(EBATS_BINARY_DIR) + "/tests/plugins/raw";

using ebats::test::TempDir;

// Copies a built plugin into `dir` as `name` (mode 0755).
std::string install(const std::string& from_dir, const std::string& so, const TempDir& dir,
                    const std::string& name = "") {
  const std::string to = dir.file(name.empty() ? so : name);
  fs::copy_file(from_dir + "/" + so, to, fs::copy_options::overwrite_existing);
  fs::permissions(to, fs::perms(0755));
  return to;
}

void noop_log(const ebats_task_ctx*, int, const char*) {}
void noop_message(const ebats_task_ctx*, const char*, size_t) {}
void noop_retry_after(const ebats_task_ctx*, uint64_t) {}
void noop_retry_limit(const ebats_task_ctx*, uint32_t) {}
int never_stop(const ebats_task_ctx*) { return 0; }
const ebats_host kHost = {sizeof(ebats_host), EBATS_ABI_MAJOR, EBATS_ABI_MINOR, noop_log, noop_message,
                          noop_retry_after,   noop_retry_limit, never_stop};

PluginRegistry load(const std::string& dir, const ebats::PluginSettings& settings = {}) {
  return PluginRegistry::load_directory(dir, &kHost, settings);
}

// Loads `so` from the bad-plugin dir alone in a fresh directory; returns the one refusal.
ebats::PluginLoadError refusal_of(const std::string& so) {
  TempDir dir;
  const std::string path = install(kBadDir, so, dir);
  const PluginRegistry reg = load(dir.path());
  REQUIRE(reg.plugins().empty());
  REQUIRE(reg.errors().size() == 1);
  CHECK(reg.errors()[0].file == path);
  CHECK(reg.errors()[0].message.rfind(path + ": ", 0) == 0);  // starts with the file
  return reg.errors()[0];
}

size_t count_lines(const std::string& path) {
  std::ifstream in(path);
  return static_cast<size_t>(std::count(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>(), '\n'));
}

}  // namespace

TEST_CASE("loader: the good test plugins load and list their tasks", "[plugin]") {
  const PluginRegistry reg = load(kGoodDir);
  INFO((reg.errors().empty() ? std::string() : reg.errors()[0].message));
  REQUIRE(reg.errors().empty());
  REQUIRE(reg.plugins().size() == 2);
  // Sorted by file name.
  CHECK(reg.plugins()[0].file == kGoodDir + "/test_c.so");
  CHECK(reg.plugins()[0].name == "test_c");
  CHECK(reg.plugins()[0].version == "1.0.0");
  CHECK(reg.plugins()[0].tasks == std::vector<std::string>{"c_echo"});
  CHECK(reg.plugins()[1].file == kGoodDir + "/test_tasks.so");
  CHECK(reg.plugins()[1].name == "test_tasks");

  const std::vector<std::string> names = reg.task_names();
  CHECK(std::is_sorted(names.begin(), names.end()));
  for (const char* task : {"c_echo", "noop", "record", "retry_once", "fail", "throw", "retry_always", "segfault",
                           "segfault_once", "abort", "hang", "sleep", "message"}) {
    INFO(task);
    CHECK(std::find(names.begin(), names.end(), task) != names.end());
  }
  const ebats::TaskHandler* noop = reg.find("noop");
  REQUIRE(noop != nullptr);
  CHECK(noop->plugin == "test_tasks");
  CHECK(noop->fn != nullptr);
  CHECK(reg.find("c_echo")->plugin == "test_c");
  CHECK(reg.find("no_such_task") == nullptr);
  CHECK(reg.find("") == nullptr);
}

TEST_CASE("loader: abi_major mismatch is refused with expected and found", "[plugin]") {
  const auto e = refusal_of("bad_abi.so");
  CHECK(e.message == e.file + ": abi_major 99, need 1: rebuild against ebats 1.x headers");
}

TEST_CASE("loader: a library without ebats_plugin_entry is refused with the likely cause", "[plugin]") {
  const auto e = refusal_of("missing_symbol.so");
  CHECK_THAT(e.message,
             Catch::Contains("no symbol ebats_plugin_entry: did you forget EBATS_PLUGIN(...) / EBATS_PLUGIN_EXPORT?"));
}

TEST_CASE("loader: a descriptor smaller than the ABI 1.0 fields is refused before it is read", "[plugin]") {
  const auto e = refusal_of("small_struct.so");
  const std::string need = std::to_string(offsetof(ebats_plugin, shutdown) + sizeof(void (*)(void*)));
  CHECK_THAT(e.message, Catch::Contains("struct_size 8, need at least " + need));
  CHECK_THAT(e.message, Catch::Contains("sizeof(ebats_plugin)"));
}

TEST_CASE("loader: init() returning nonzero refuses the plugin", "[plugin]") {
  const auto e = refusal_of("init_fails.so");
  CHECK_THAT(e.message, Catch::Contains("init() returned 7"));
}

TEST_CASE("loader: an entry point returning NULL is refused", "[plugin]") {
  const auto e = refusal_of("null_descriptor.so");
  CHECK_THAT(e.message, Catch::Contains("ebats_plugin_entry() returned NULL"));
}

TEST_CASE("loader: a duplicate task name refuses the later file and names both", "[plugin]") {
  TempDir dir;
  const std::string first = install(kBadDir, "dup_task.so", dir);  // sorts before test_tasks.so
  const std::string later = install(kGoodDir, "test_tasks.so", dir);
  const PluginRegistry reg = load(dir.path());
  REQUIRE(reg.plugins().size() == 1);
  CHECK(reg.plugins()[0].name == "dup_task");
  REQUIRE(reg.errors().size() == 1);
  CHECK(reg.errors()[0].file == later);
  CHECK_THAT(reg.errors()[0].message, Catch::StartsWith(later + ": task \"noop\" is already registered by " + first));
  // The refused plugin registered none of its tasks, not even the unique ones.
  CHECK(reg.find("retry_once") == nullptr);
  CHECK(reg.find("noop")->plugin == "dup_task");
}

TEST_CASE("loader: one bad plugin never stops the others", "[plugin]") {
  TempDir dir;
  for (const char* so : {"bad_abi.so", "missing_symbol.so", "small_struct.so", "init_fails.so", "null_descriptor.so"}) {
    install(kBadDir, so, dir);
  }
  install(kGoodDir, "test_c.so", dir);
  install(kGoodDir, "test_tasks.so", dir);
  const PluginRegistry reg = load(dir.path());
  CHECK(reg.errors().size() == 5);
  REQUIRE(reg.plugins().size() == 2);
  CHECK(reg.find("c_echo") != nullptr);
  CHECK(reg.find("noop") != nullptr);
  // Errors come in file order.
  CHECK(reg.errors()[0].file == dir.file("bad_abi.so"));
  CHECK(reg.errors()[4].file == dir.file("small_struct.so"));
}

TEST_CASE("loader: a symlink to a good plugin is refused", "[plugin]") {
  TempDir dir;
  const std::string link = dir.file("linked.so");
  REQUIRE(::symlink((kGoodDir + "/test_c.so").c_str(), link.c_str()) == 0);
  const PluginRegistry reg = load(dir.path());
  CHECK(reg.plugins().empty());
  REQUIRE(reg.errors().size() == 1);
  CHECK(reg.errors()[0].message ==
        link + ": is a symlink: plugins must be regular files; copy the file instead of linking");
}

TEST_CASE("loader: a group- or world-writable plugin file is refused with the chmod fix", "[plugin]") {
  TempDir dir;
  const std::string path = install(kGoodDir, "test_c.so", dir);
  SECTION("group-writable") {
    fs::permissions(path, fs::perms(0775));
    const PluginRegistry reg = load(dir.path());
    CHECK(reg.plugins().empty());
    REQUIRE(reg.errors().size() == 1);
    CHECK_THAT(reg.errors()[0].message, Catch::StartsWith(path + ": is group-writable (mode 0775)"));
    CHECK_THAT(reg.errors()[0].message, Catch::EndsWith("chmod go-w " + path));
  }
  SECTION("world-writable") {
    fs::permissions(path, fs::perms(0757));
    const PluginRegistry reg = load(dir.path());
    REQUIRE(reg.errors().size() == 1);
    CHECK_THAT(reg.errors()[0].message, Catch::StartsWith(path + ": is world-writable (mode 0757)"));
    CHECK_THAT(reg.errors()[0].message, Catch::EndsWith("chmod go-w " + path));
  }
}

TEST_CASE("loader: a world-writable plugin directory refuses every plugin", "[plugin]") {
  TempDir dir;
  install(kGoodDir, "test_c.so", dir);
  fs::permissions(dir.path(), fs::perms(0777));
  const PluginRegistry reg = load(dir.path());
  CHECK(reg.plugins().empty());
  CHECK(reg.task_names().empty());
  REQUIRE(reg.errors().size() == 1);
  CHECK(reg.errors()[0].file == dir.path());
  CHECK_THAT(reg.errors()[0].message,
             Catch::StartsWith(dir.path() + ": plugin directory is group- and world-writable (mode 0777)"));
  CHECK_THAT(reg.errors()[0].message, Catch::EndsWith("chmod go-w " + dir.path()));
}

TEST_CASE("loader: a missing or symlinked directory is one error naming it", "[plugin]") {
  TempDir dir;
  SECTION("missing") {
    const std::string missing = dir.file("no-such-dir");
    const PluginRegistry reg = load(missing);
    REQUIRE(reg.errors().size() == 1);
    CHECK(reg.errors()[0].file == missing);
    CHECK_THAT(reg.errors()[0].message, Catch::StartsWith(missing + ": plugin directory does not exist"));
    CHECK(reg.plugins().empty());
  }
  SECTION("a symlink") {
    const std::string link = dir.file("link");
    REQUIRE(::symlink(kGoodDir.c_str(), link.c_str()) == 0);
    const PluginRegistry reg = load(link);
    REQUIRE(reg.errors().size() == 1);
    CHECK_THAT(reg.errors()[0].message, Catch::StartsWith(link + ": is a symlink"));
    CHECK(reg.plugins().empty());
  }
  SECTION("a file") {
    const std::string file = install(kGoodDir, "test_c.so", dir);
    const PluginRegistry reg = load(file);
    REQUIRE(reg.errors().size() == 1);
    CHECK_THAT(reg.errors()[0].message, Catch::StartsWith(file + ": is not a directory"));
  }
}

TEST_CASE("loader: only regular *.so files are considered", "[plugin]") {
  TempDir dir;
  install(kGoodDir, "test_c.so", dir);
  install(kGoodDir, "test_tasks.so", dir, "test_tasks.so.bak");  // not *.so: ignored
  install(kGoodDir, "test_tasks.so", dir, ".hidden.so");         // hidden: ignored
  install(kGoodDir, "test_tasks.so", dir, "README");
  const PluginRegistry reg = load(dir.path());
  CHECK(reg.errors().empty());
  REQUIRE(reg.plugins().size() == 1);
  CHECK(reg.plugins()[0].name == "test_c");
  CHECK(reg.find("noop") == nullptr);
}

TEST_CASE("loader: directories, FIFOs and non-ELF files named *.so are refused", "[plugin]") {
  TempDir dir;
  REQUIRE(::mkdir(dir.file("sub.so").c_str(), 0755) == 0);
  REQUIRE(::mkfifo(dir.file("fifo.so").c_str(), 0644) == 0);  // opening it would block: must be refused first
  {
    std::ofstream junk(dir.file("junk.so"));
    junk << "not an ELF file\n";
  }
  fs::permissions(dir.file("junk.so"), fs::perms(0644));
  const PluginRegistry reg = load(dir.path());
  CHECK(reg.plugins().empty());
  REQUIRE(reg.errors().size() == 3);
  CHECK(reg.errors()[0].message == dir.file("fifo.so") + ": is a FIFO: plugins must be regular files");
  CHECK_THAT(reg.errors()[1].message, Catch::StartsWith(dir.file("junk.so") + ": cannot load: "));
  CHECK_THAT(reg.errors()[1].message, Catch::EndsWith("check its dependencies with ldd " + dir.file("junk.so")));
  CHECK_THAT(reg.errors()[1].message, !Catch::Contains("/proc/self/fd"));  // the real path, not the fd path
  CHECK(reg.errors()[2].message == dir.file("sub.so") + ": is a directory: plugins must be regular files");
}

TEST_CASE("loader: a plugin owned by another user is refused", "[plugin]") {
  if (::geteuid() != 0) {
    WARN("not root: cannot chown a file to another user; skipped");
    return;
  }
  TempDir dir;
  const std::string path = install(kGoodDir, "test_c.so", dir);
  REQUIRE(::chown(path.c_str(), 65534, 65534) == 0);
  const PluginRegistry reg = load(dir.path());
  CHECK(reg.plugins().empty());
  REQUIRE(reg.errors().size() == 1);
  CHECK_THAT(reg.errors()[0].message, Catch::StartsWith(path + ": owned by uid 65534, need root (uid 0)"));
  CHECK_THAT(reg.errors()[0].message, Catch::EndsWith("chown root " + path));
}

TEST_CASE("loader: init() receives its plugin's settings, and EBATS_PLUGIN_INIT works after EBATS_PLUGIN",
          "[plugin]") {
  TempDir dir;
  const std::string path = install(kRawDir, "init_order.so", dir);
  SECTION("accepted") {
    const PluginRegistry reg = load(dir.path(), {{"init_order", R"({"x":1})"}});
    REQUIRE(reg.errors().empty());
    REQUIRE(reg.plugins().size() == 1);
    CHECK(reg.plugins()[0].version == "2.0");
  }
  SECTION("the hook refuses") {
    const PluginRegistry reg = load(dir.path(), {{"init_order", R"({"refuse":true})"}});
    REQUIRE(reg.errors().size() == 1);
    CHECK_THAT(reg.errors()[0].message, Catch::StartsWith(path + ": init() returned 3"));
  }
  SECTION("another plugin's settings are not its own: it gets {}") {
    const PluginRegistry reg = load(dir.path(), {{"shop", R"({"refuse":true})"}});
    CHECK(reg.errors().empty());
    CHECK(reg.plugins().size() == 1);
  }
}

TEST_CASE("loader: the registry calls shutdown() once, also after a move", "[plugin]") {
  TempDir dir;
  install(kRawDir, "raw_throw.so", dir);
  const std::string record = dir.file("shutdown.txt");
  REQUIRE(::setenv("EBATS_TEST_SHUTDOWN_RECORD", record.c_str(), 1) == 0);
  {
    PluginRegistry reg = load(dir.path());
    REQUIRE(reg.plugins().size() == 1);
    PluginRegistry moved(std::move(reg));
    CHECK(moved.find("raw_throw_std") != nullptr);
    PluginRegistry assigned;
    assigned = std::move(moved);
    CHECK(count_lines(record) == 0);
  }
  CHECK(count_lines(record) == 1);
  {
    PluginRegistry a = load(dir.path());
    PluginRegistry b = load(dir.path());
    a = std::move(b);  // a's own plugin is shut down first
    CHECK(count_lines(record) == 2);
  }
  CHECK(count_lines(record) == 3);
  ::unsetenv("EBATS_TEST_SHUTDOWN_RECORD");
}

TEST_CASE("a plugin file cut short is refused as truncated, not loaded into a SIGBUS", "[plugin]") {
  // dlopen() of a truncated .so maps pages past the end of the file: the first
  // touch killed the child (a copy cut short, then renamed into place).
  TempDir dir;
  const std::string whole = install(kGoodDir, "test_tasks.so", dir, "whole.so");
  const auto size = static_cast<size_t>(fs::file_size(whole));
  for (const size_t keep : {size_t{100}, size_t{4096}, size / 2, size - 1}) {
    TempDir cut_dir;
    const std::string cut = cut_dir.file("test_tasks.so");
    {
      std::ifstream in(whole, std::ios::binary);
      std::string head(keep, '\0');
      in.read(head.data(), static_cast<std::streamsize>(keep));
      std::ofstream(cut, std::ios::binary).write(head.data(), in.gcount());
    }
    fs::permissions(cut, fs::perms(0755));
    INFO("kept " << keep << " of " << size << " bytes");
    const PluginRegistry reg = load(cut_dir.path());
    CHECK(reg.plugins().empty());
    REQUIRE(reg.errors().size() == 1);
    CHECK_THAT(reg.errors()[0].message, Catch::StartsWith(cut + ": truncated: " + std::to_string(keep) + " bytes"));
  }
  const PluginRegistry reg = load(dir.path());  // the whole file still loads
  CHECK(reg.errors().empty());
  CHECK(reg.plugins().size() == 1);
}
