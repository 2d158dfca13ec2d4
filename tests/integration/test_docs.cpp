// Docs are code: every config in a ```yaml block of README.md and docs/*.md
// loads without errors, and every ebats command line the docs show (in code
// blocks and in `inline code`) names a command and options the program's
// --help lists, and every script they run exists with the options they give.
// A renamed flag or key fails here, not for a user.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ebats/config.h"
#include "integration/harness.h"

namespace fs = std::filesystem;
using ebats::test::TestSystem;

namespace {

struct Snippet {
  std::string file;  // relative to the repository
  int line = 0;      // of the opening fence, or of the inline span
  std::string lang;  // "yaml", "sh", "" ...; "inline" for `code` in prose
  std::string text;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<fs::path> doc_files() {
  std::vector<fs::path> files{fs::path(EBATS_SOURCE_DIR) / "README.md"};
  for (const auto& e : fs::directory_iterator(fs::path(EBATS_SOURCE_DIR) / "docs")) {
    if (e.path().extension() == ".md") files.push_back(e.path());
  }
  return files;
}

// Fenced blocks (indented ones too, their indentation removed) and inline spans.
std::vector<Snippet> snippets() {
  static const std::regex fence(R"(^(\s*)```(\w*)\s*$)");
  static const std::regex span("`([^`\n]+)`");
  std::vector<Snippet> out;
  for (const fs::path& path : doc_files()) {
    const std::string rel = fs::relative(path, EBATS_SOURCE_DIR).string();
    std::istringstream lines(slurp(path));
    std::string line;
    int n = 0;
    bool in_block = false;
    Snippet block;
    size_t indent = 0;
    while (std::getline(lines, line)) {
      ++n;
      std::smatch m;
      if (std::regex_match(line, m, fence)) {
        if (in_block) {
          out.push_back(block);
          in_block = false;
        } else {
          in_block = true;
          indent = m[1].length();
          block = Snippet{rel, n, m[2].str(), ""};
        }
        continue;
      }
      if (in_block) {
        block.text += (line.size() >= indent ? line.substr(indent) : line) + "\n";
        continue;
      }
      for (auto it = std::sregex_iterator(line.begin(), line.end(), span); it != std::sregex_iterator(); ++it) {
        out.push_back(Snippet{rel, n, "inline", (*it)[1].str()});
      }
    }
  }
  return out;
}

std::vector<std::string> words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

const std::set<std::string> kPrograms = {"ebatsctl", "ebats-scheduler", "ebats-ntask-worker", "ebats-dtask-worker"};
const std::set<std::string> kCtlCommands = {"publish", "enqueue", "stats", "dead",   "setup",
                                             "task",    "results", "events", "plugins"};

std::string help_of(const TestSystem& sys, const std::string& program) {
  static std::map<std::string, std::string> cache;
  auto it = cache.find(program);
  if (it != cache.end()) return it->second;
  std::string out;
  REQUIRE(sys.run({std::string(EBATS_BIN_DIR) + "/" + program, "--help"}, &out) == 0);
  return cache[program] = out;
}

// "--flag=value]," -> "--flag"
std::string flag_name(std::string w) {
  const size_t eq = w.find('=');
  if (eq != std::string::npos) w.resize(eq);
  while (!w.empty() && std::string("[]|,.;:)'\"").find(w.back()) != std::string::npos) w.pop_back();
  return w;
}

}  // namespace

TEST_CASE("docs: every config shown in a yaml block loads without errors", "[integration][docs]") {
  size_t checked = 0;
  for (const Snippet& s : snippets()) {
    if (s.lang != "yaml") continue;
    INFO(s.file << ":" << s.line << ":\n" << s.text);
    YAML::Node doc;
    REQUIRE_NOTHROW(doc = YAML::Load(s.text));
    REQUIRE(doc.IsMap());
    if (s.text.rfind("# prometheus.yml\n", 0) == 0) {  // a Prometheus config (docs/METRICS.md), not an ebats one
      CHECK(doc["scrape_configs"].IsSequence());
      continue;
    }
    // A fragment shows some sections; the required ones are added when missing.
    if (!doc["broker"]) doc["broker"]["url"] = "sqlite:///tmp/ebats-docs-test.db";
    if (!doc["plugins"]) doc["plugins"]["dir"] = "/usr/lib/ebats/plugins";
    YAML::Emitter e;
    e << doc;
    const ebats::ConfigLoad load = ebats::load_config_from_string(e.c_str(), s.file);
    INFO(load.error_text());
    CHECK(load.errors.empty());
    ++checked;
  }
  CHECK(checked >= 4);
}

TEST_CASE("docs: every ebats command line shown names commands and options that exist", "[integration][docs]") {
  TestSystem sys("  e:\n    - {task: noop, topic: t}\n");
  static const std::regex script(R"(((?:scripts|tests/amqp|bench)/[\w.-]+\.sh))");
  size_t commands = 0, scripts = 0;
  for (const Snippet& s : snippets()) {
    if (s.lang != "sh" && !s.lang.empty() && s.lang != "inline") continue;
    std::istringstream lines(s.text);
    std::string line;
    while (std::getline(lines, line)) {
      const size_t comment = line.find("  #");
      if (comment != std::string::npos) line.resize(comment);
      if (line.rfind("#", 0) == 0) continue;
      const std::vector<std::string> w = words(line);
      for (size_t i = 0; i < w.size(); ++i) {
        const std::string program = fs::path(w[i]).filename().string();
        if (!kPrograms.count(program)) continue;
        INFO(s.file << ":" << s.line << ": " << line);
        const std::string help = help_of(sys, program);
        bool command_seen = program != "ebatsctl";
        for (size_t j = i + 1; j < w.size() && w[j] != "|" && w[j] != "&&" && w[j] != ";"; ++j) {
          const std::string word = w[j].substr(w[j].find_first_not_of("[("));  // "[--json]" -> "--json]"
          if (word.rfind("--", 0) == 0) {
            const std::string flag = flag_name(word);
            if (flag.size() > 2) CHECK_THAT(help, Catch::Contains(flag + " ") || Catch::Contains(flag + "\n") ||
                                                      Catch::Contains(flag + "]") || Catch::Contains(flag + ","));
            if (word.find('=') == std::string::npos && (flag == "--config" || flag == "--topic")) ++j;  // its value
            continue;
          }
          if (!command_seen && w[j] != "-c" && w[j].front() != '[') {
            CHECK(kCtlCommands.count(w[j]) == 1);
            command_seen = true;
          }
        }
        ++commands;
      }
      for (auto it = std::sregex_iterator(line.begin(), line.end(), script); it != std::sregex_iterator(); ++it) {
        const std::string rel = (*it)[1].str();
        const fs::path path = fs::path(EBATS_SOURCE_DIR) / rel;
        INFO(s.file << ":" << s.line << ": " << line);
        REQUIRE(fs::exists(path));
        CHECK((fs::status(path).permissions() & fs::perms::owner_exec) != fs::perms::none);
        // Options given to the script are ones it handles.
        const std::string body = slurp(path);
        const std::vector<std::string> after = words(line.substr(static_cast<size_t>(it->position()) + rel.size()));
        for (const std::string& a : after) {
          if (a == "|" || a == "&&" || a == ";") break;
          if (a.rfind("--", 0) == 0) CHECK_THAT(body, Catch::Contains(flag_name(a)));
        }
        ++scripts;
      }
    }
  }
  CHECK(commands >= 20);
  CHECK(scripts >= 5);
}
