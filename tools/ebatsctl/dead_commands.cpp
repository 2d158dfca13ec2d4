// ebatsctl dead: list, show, replay and purge dead letters, all of them or a
// filtered set (by event, task, topic, kind, reason and time).
#include <iomanip>
#include <iostream>
#include <limits>
#include <map>

#include "ctl.h"
#include "ebats/duration.h"

namespace ebatsctl {
namespace {

constexpr uint32_t kDeadListRows = 100;  // dead list without --limit: the newest this many

// Which dead letters a command applies to. Empty fields match everything.
struct Filter {
  std::string event;       // --event: dead events of this name
  std::string task;        // --task: dead tasks of this name
  std::string topic;       // --topic
  std::string kind;        // --kind event|task|raw
  std::string reason;      // --reason: a part of the reason
  ebats::WallMs since = 0;   // --since D: dead at or after now - D
  ebats::WallMs before = 0;  // --older-than D: dead before now - D

  bool any() const {
    return !event.empty() || !task.empty() || !topic.empty() || !kind.empty() || !reason.empty() || since > 0 ||
           before > 0;
  }
  bool matches(const ebats::DeadLetter& l) const {
    if (!event.empty() && (l.kind != "event" || l.name != event)) return false;
    if (!task.empty() && (l.kind != "task" || l.name != task)) return false;
    if (!topic.empty() && l.topic != topic) return false;
    if (!kind.empty() && l.kind != kind) return false;
    if (!reason.empty() && l.reason.find(reason) == std::string::npos) return false;
    if (since > 0 && l.dead_at < since) return false;
    if (before > 0 && l.dead_at >= before) return false;
    return true;
  }
};

// A dead letter as one JSON object. json::write_string turns invalid UTF-8
// (a raw malformed body) into U+FFFD, so the output is always valid JSON.
void write_letter_json(ebats::json::Writer& w, const ebats::DeadLetterEntry& e, bool with_body) {
  const auto& l = e.letter;
  w.StartObject();
  w.Key("id");
  w.Uint64(e.seq);
  w.Key("message_id");
  ebats::json::write_string(w, l.id);
  w.Key("kind");
  ebats::json::write_string(w, l.kind);
  w.Key("topic");
  ebats::json::write_string(w, l.topic);
  w.Key("name");
  ebats::json::write_string(w, l.name);
  w.Key("reason");
  ebats::json::write_string(w, l.reason);
  w.Key("error");
  ebats::json::write_string(w, l.error);
  w.Key("attempts");
  w.Uint(l.attempts);
  w.Key("first_seen");
  w.Int64(l.first_seen);
  w.Key("dead_at");
  w.Int64(l.dead_at);
  if (with_body) {
    w.Key("body");
    ebats::json::write_string(w, l.body);
  }
  w.EndObject();
}

void print_table(const std::vector<ebats::DeadLetterEntry>& list) {
  std::cout << std::left << std::setw(7) << "ID" << std::setw(7) << "KIND" << std::setw(12) << "TOPIC"
            << std::setw(20) << "NAME" << std::setw(22) << "DEAD AT" << "REASON\n";
  for (const auto& e : list) {
    std::cout << std::left << std::setw(7) << e.seq << std::setw(7) << e.letter.kind << std::setw(12)
              << (e.letter.topic.empty() ? "-" : e.letter.topic) << std::setw(20)
              << (e.letter.name.empty() ? "-" : e.letter.name) << std::setw(22) << format_time(e.letter.dead_at)
              << e.letter.reason << (e.letter.error.empty() ? "" : ": " + e.letter.error) << "\n";
  }
}

// "3 dead letter(s)"
std::string letters(uint64_t n) { return std::to_string(n) + " dead letter(s)"; }

// Prints what a filtered replay or purge did (`count`), or with --dry-run
// would do to `selected`.
void print_outcome(const std::string& verb, const std::vector<ebats::DeadLetterEntry>& selected, uint64_t count,
                   bool dry_run, bool json) {
  if (json) {
    print_json([&](ebats::json::Writer& w) {
      w.StartObject();
      w.Key("dry_run");
      w.Bool(dry_run);
      w.Key("count");
      w.Uint64(count);
      if (dry_run) {
        w.Key("ids");
        w.StartArray();
        for (const auto& e : selected) {
          if (verb != "replay" || e.letter.kind != "raw") w.Uint64(e.seq);
        }
        w.EndArray();
      }
      w.EndObject();
    });
    return;
  }
  if (!dry_run) {
    std::cout << (verb == "replay" ? "replayed " : "purged ") << letters(count) << "\n";
    return;
  }
  if (!selected.empty()) print_table(selected);
  std::cout << "would " << verb << " " << letters(count);
  if (verb == "replay" && count < selected.size()) {
    std::cout << " (" << selected.size() - count << " raw, which cannot be replayed, stay)";
  }
  std::cout << "; --dry-run: nothing changed\n";
}

}  // namespace

int cmd_dead(const Context& ctx, const std::vector<std::string>& argv) {
  if (argv.empty()) return usage_error("dead needs a subcommand: list, show, replay or purge");
  const std::string sub = argv[0];
  if (sub != "list" && sub != "show" && sub != "replay" && sub != "purge") {
    return usage_error("unknown dead subcommand '" + sub + "' (list, show, replay, purge)");
  }
  const std::vector<std::string> rest(argv.begin() + 1, argv.end());
  const ebats::WallMs now = ctx.clock.wall_now();
  bool json = false, all = false, dry_run = false, limit_given = false;
  uint32_t limit = kDeadListRows;
  Filter filter;
  std::vector<std::string> pos;
  // The options taking a value, and where it goes.
  std::map<std::string, std::string*> text_options = {{"--event", &filter.event},   {"--task", &filter.task},
                                                      {"--topic", &filter.topic},   {"--kind", &filter.kind},
                                                      {"--reason", &filter.reason}};
  for (size_t i = 0; i < rest.size(); ++i) {
    const std::string& a = rest[i];
    const bool has_value = i + 1 < rest.size();
    if (a == "--json") {
      json = true;
    } else if (a == "--all") {
      all = true;
    } else if (a == "--dry-run") {
      dry_run = true;
    } else if (a == "--limit" && has_value) {
      auto n = parse_id(rest[++i]);
      if (!n.ok() || *n > std::numeric_limits<uint32_t>::max()) {
        return usage_error("--limit takes a number from 0 (all) to 4294967295, not '" + rest[i] + "'");
      }
      limit = static_cast<uint32_t>(*n);
      limit_given = true;
    } else if ((a == "--since" || a == "--older-than") && has_value) {
      auto d = ebats::parse_duration(rest[++i]);
      if (!d.ok()) return usage_error(a + ": " + d.status().message());
      (a == "--since" ? filter.since : filter.before) = now - d->count();
    } else if (text_options.count(a) && has_value) {
      *text_options[a] = rest[++i];
      if (rest[i].empty()) return usage_error(a + " takes a non-empty value");
    } else if (!a.empty() && a[0] == '-') {
      return usage_error("dead " + sub + ": unknown option '" + a + "'" + (has_value ? "" : " or a missing value"));
    } else {
      pos.push_back(a);
    }
  }
  if (!filter.kind.empty() && filter.kind != "event" && filter.kind != "task" && filter.kind != "raw") {
    return usage_error("--kind is event, task or raw, not '" + filter.kind + "'");
  }
  if (filter.any() && sub == "show") return usage_error("dead show takes one ID, no filters");
  if (dry_run && (sub == "list" || sub == "show")) return usage_error("--dry-run goes with dead replay and dead purge");
  if (all && sub != "replay") return usage_error("--all goes with dead replay");
  // Not a filter: "purge --limit 1" must not purge everything.
  if (limit_given && sub != "list") return usage_error("--limit goes with dead list; replay and purge take filters");
  if (!pos.empty() && (filter.any() || all || dry_run) && sub == "replay") {
    return usage_error("dead replay takes IDs, or --all and filters, not both");
  }

  auto broker = open_broker(ctx);
  if (!broker.ok()) return report(broker.status());
  auto& store = (*broker)->dead_letters();

  // The dead letters the filters pick, newest first.
  auto select = [&](uint32_t max) -> ebats::Result<std::vector<ebats::DeadLetterEntry>> {
    auto list = store.list(filter.any() ? 0 : max);
    if (!list.ok()) return list.status();
    std::vector<ebats::DeadLetterEntry> picked;
    for (auto& e : *list) {
      if (max > 0 && picked.size() >= max) break;
      if (filter.matches(e.letter)) picked.push_back(std::move(e));
    }
    return picked;
  };

  if (sub == "list") {
    if (!pos.empty()) return usage_error("dead list takes no IDs (use dead show ID)");
    auto list = select(limit);
    if (!list.ok()) return report(list.status());
    if (json) {
      print_json([&](ebats::json::Writer& w) {
        w.StartArray();
        for (const auto& e : *list) write_letter_json(w, e, false);
        w.EndArray();
      });
      return kOk;
    }
    if (list->empty()) {
      std::cout << (filter.any() ? "no dead letters match\n" : "no dead letters\n");
      return kOk;
    }
    print_table(*list);
    return kOk;
  }
  if (sub == "show") {
    if (pos.size() != 1) return usage_error("dead show takes one ID");
    auto id = parse_id(pos[0]);
    if (!id.ok()) return report(id.status());
    auto e = store.show(*id);
    if (!e.ok()) return report(e.status());
    if (json) {
      print_json([&](ebats::json::Writer& w) { write_letter_json(w, *e, true); });
      return kOk;
    }
    const auto& l = e->letter;
    std::cout << "id:          " << e->seq << "\nmessage id:  " << l.id << "\nkind:        " << l.kind
              << "\ntopic:       " << (l.topic.empty() ? "-" : l.topic) << "\nname:        " << l.name
              << "\nreason:      " << l.reason << "\nerror:       " << l.error << "\nattempts:    " << l.attempts
              << "\nfirst seen:  " << format_time(l.first_seen) << "\ndead at:     " << format_time(l.dead_at)
              << "\nbody:        " << l.body << "\n";
    return kOk;
  }
  if (sub == "replay" && !pos.empty()) {
    std::vector<uint64_t> ids;
    for (const auto& p : pos) {  // every ID checked before any is replayed
      auto id = parse_id(p);
      if (!id.ok()) return report(id.status());
      ids.push_back(*id);
    }
    uint64_t replayed = 0;
    for (uint64_t id : ids) {
      ebats::Status s = store.replay(id, now);
      if (!s.ok()) {
        // What was replayed before the failure stays replayed: say how much.
        if (json) print_outcome("replay", {}, replayed, false, true);
        if (ids.size() > 1) {
          std::cerr << "ebatsctl: replayed " << replayed << " of " << ids.size() << " before dead letter " << id
                    << " failed\n";
        }
        return report(s);
      }
      ++replayed;
      if (!json) std::cout << "replayed " << id << "\n";
    }
    if (json) print_outcome("replay", {}, replayed, false, true);
    return kOk;
  }
  if (sub == "replay" && !all && !filter.any()) {
    return usage_error("dead replay takes ID..., --all, or filters (--event, --task, --topic, --kind, --reason, "
                       "--since, --older-than)");
  }
  if (!pos.empty()) return usage_error("dead purge takes no IDs: filters pick what it deletes");
  // A filtered (or whole) replay or purge.
  auto selected = select(0);
  if (!selected.ok()) return report(selected.status());
  std::vector<uint64_t> seqs;
  uint64_t replayable = 0;
  for (const auto& e : *selected) {
    seqs.push_back(e.seq);
    if (e.letter.kind != "raw") ++replayable;
  }
  if (dry_run) {
    print_outcome(sub, *selected, sub == "replay" ? replayable : seqs.size(), true, json);
    return kOk;
  }
  ebats::Result<uint64_t> n = uint64_t{0};
  if (sub == "replay") {
    n = filter.any() ? store.replay_selected(seqs, now) : store.replay_all(now);
  } else {
    n = filter.any() ? store.purge_selected(seqs) : store.purge();
  }
  if (!n.ok()) return report(n.status());
  print_outcome(sub, *selected, *n, false, json);
  return kOk;
}

}  // namespace ebatsctl
