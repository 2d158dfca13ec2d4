#include "scheduler/results_pruner.h"

#include <algorithm>
#include <string>

namespace ebats {

ResultsPruner::Settings ResultsPruner::settings_of(const Config& config) {
  Settings s;
  if (config.sqlite_path().empty()) return s;  // RabbitMQ: nothing to prune
  s.keep_ms = config.results_keep_ms;
  s.keep_rows = config.results_keep_rows;
  if (s.keep_ms > 0) s.period = std::min(s.period, std::chrono::milliseconds(s.keep_ms));
  return s;
}

ResultsPruner::ResultsPruner(Settings settings, Broker& broker, const Clock& clock, const Logger& log)
    : settings_(settings), broker_(broker), clock_(clock), log_(log), next_(clock.steady_now()) {}

void ResultsPruner::follow(const Config& config) {
  const Settings next = settings_of(config);
  if (next.keep_ms == settings_.keep_ms && next.keep_rows == settings_.keep_rows) return;
  log_.info("results retention changed", {{"keep", std::to_string(next.keep_ms) + "ms"},
                                          {"keep_rows", std::to_string(next.keep_rows)}});
  settings_.keep_ms = next.keep_ms;
  settings_.keep_rows = next.keep_rows;
  settings_.period = next.period;
  next_ = clock_.steady_now();
}

Result<uint32_t> ResultsPruner::tick() {
  if (!settings_.enabled()) return uint32_t{0};
  const SteadyTime now = clock_.steady_now();
  if (now < next_) return uint32_t{0};
  if (round_batches_ == 0) round_start_ = now;
  const WallMs before = settings_.keep_ms > 0 ? clock_.wall_now() - settings_.keep_ms : 0;
  auto pruned = broker_.prune_results(before, settings_.keep_rows, settings_.batch_rows);
  if (!pruned.ok()) {
    log_.warn("pruning results failed; trying again later",
              {{"error", pruned.status().message()}, {"retry_in", std::to_string(settings_.period.count()) + "ms"}});
    round_rows_ = 0;
    round_batches_ = 0;
    next_ = clock_.steady_now() + settings_.period;
    return pruned.status();
  }
  round_rows_ += *pruned;
  ++round_batches_;
  if (*pruned >= settings_.batch_rows) {
    next_ = clock_.steady_now() + settings_.pause;  // more to do: let the others write first
    return *pruned;
  }
  if (round_rows_ > 0) {
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.steady_now() - round_start_);
    log_.debug("pruned results", {{"rows", std::to_string(round_rows_)},
                                  {"batches", std::to_string(round_batches_)},
                                  {"took", std::to_string(took.count()) + "ms"}});
  }
  round_rows_ = 0;
  round_batches_ = 0;
  next_ = clock_.steady_now() + settings_.period;
  return *pruned;
}

}  // namespace ebats
