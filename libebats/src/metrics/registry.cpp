#include "metrics/registry.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace ebats::metrics {
namespace {

// Label sets per family: task names and topics come from messages, so a
// producer inventing names could otherwise grow a daemon's memory and every
// scrape without bound. Past it, new label sets share one series whose
// values are all kOverflowValue.
constexpr size_t kMaxSeriesPerFamily = 10000;
const char* const kOverflowValue = "_overflow";

bool valid_name(const std::string& n) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

void check_names(const std::string& name, const std::vector<std::string>& labels) {
  if (!valid_name(name)) throw std::invalid_argument("bad metric name: " + name);
  for (const auto& l : labels) {
    if (!valid_name(l) || l == "le" || l.rfind("__", 0) == 0) throw std::invalid_argument("bad label name: " + l);
  }
}

std::string escape_help(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

const char* type_name(Type t) {
  switch (t) {
    case Type::counter: return "counter";
    case Type::gauge: return "gauge";
    case Type::histogram: return "histogram";
  }
  return "untyped";
}

// `{a="x",b="y"` plus `extra` (already formatted, e.g. le="0.5"), closed; "" when empty.
std::string label_text(const std::vector<std::string>& names, const std::vector<std::string>& values,
                       const std::string& extra = "") {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    out += out.empty() ? "{" : ",";
    out += names[i] + "=\"" + escape_label_value(values[i]) + "\"";
  }
  if (!extra.empty()) {
    out += out.empty() ? "{" : ",";
    out += extra;
  }
  if (!out.empty()) out += "}";
  return out;
}

void atomic_add(std::atomic<double>* a, double d) {
  double cur = a->load(std::memory_order_relaxed);
  while (!a->compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
  }
}

}  // namespace

std::string escape_label_value(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[32];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

void Gauge::add(double d) { atomic_add(&value_, d); }

Histogram::Histogram(const std::vector<double>* bounds)
    : bounds_(bounds), buckets_(new std::atomic<uint64_t>[bounds->size() + 1]) {
  for (size_t i = 0; i <= bounds_->size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double v) {
  // The first bucket whose upper bound is >= v (le: less than or equal).
  const size_t i = static_cast<size_t>(std::lower_bound(bounds_->begin(), bounds_->end(), v) - bounds_->begin());
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  atomic_add(&sum_, v);
}

std::vector<uint64_t> Histogram::bucket_counts() const {
  std::vector<uint64_t> out(bounds_->size() + 1);
  for (size_t i = 0; i < out.size(); ++i) out[i] = buckets_[i].load(std::memory_order_relaxed);
  return out;
}

uint64_t Histogram::count() const {
  uint64_t n = 0;
  for (uint64_t c : bucket_counts()) n += c;
  return n;
}

template <class M>
M& Family<M>::labels(const std::vector<std::string>& values) {
  if (values.size() != label_names_.size()) {
    throw std::invalid_argument(name_ + ": " + std::to_string(label_names_.size()) + " label values expected");
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = children_.find(values);
  if (it == children_.end()) {
    const bool full = children_.size() >= kMaxSeriesPerFamily;
    // Full: the overflow series, created once (emplace finds it after that).
    it = children_.emplace(full ? std::vector<std::string>(values.size(), kOverflowValue) : values, nullptr).first;
  }
  auto& slot = it->second;
  if (!slot) {
    if constexpr (std::is_same_v<M, Histogram>) {
      slot = std::make_unique<Histogram>(&bounds_);
    } else {
      slot = std::make_unique<M>();
    }
  }
  return *slot;
}

template <class M>
void Family<M>::render(std::string* out) const {
  *out += "# HELP " + name_ + " " + escape_help(help_) + "\n";
  *out += "# TYPE " + name_ + " " + type_name(type_) + "\n";
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [values, m] : children_) {
    if constexpr (std::is_same_v<M, Histogram>) {
      const std::vector<uint64_t> counts = m->bucket_counts();
      uint64_t cumulative = 0;
      for (size_t i = 0; i < counts.size(); ++i) {
        cumulative += counts[i];
        const std::string le = i < bounds_.size() ? format_value(bounds_[i]) : "+Inf";
        *out += name_ + "_bucket" + label_text(label_names_, values, "le=\"" + le + "\"") + " " +
                std::to_string(cumulative) + "\n";
      }
      *out += name_ + "_sum" + label_text(label_names_, values) + " " + format_value(m->sum()) + "\n";
      *out += name_ + "_count" + label_text(label_names_, values) + " " + std::to_string(cumulative) + "\n";
    } else if constexpr (std::is_same_v<M, Counter>) {
      *out += name_ + label_text(label_names_, values) + " " + std::to_string(m->value()) + "\n";
    } else {
      *out += name_ + label_text(label_names_, values) + " " + format_value(m->value()) + "\n";
    }
  }
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

const std::vector<double>& duration_buckets() {
  static const std::vector<double> b = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                        1,     2.5,    5,     10,   30,    60,   120, 300};
  return b;
}

CounterFamily& Registry::counter(const std::string& name, const std::string& help, std::vector<std::string> labels) {
  check_names(name, labels);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) {
    Entry e{Type::counter, {}, {}, {}};
    e.counter.reset(new CounterFamily(name, help, std::move(labels), Type::counter));
    it = families_.emplace(name, std::move(e)).first;
    order_.push_back(name);
  }
  if (!it->second.counter) throw std::invalid_argument(name + " is not a counter");
  return *it->second.counter;
}

GaugeFamily& Registry::gauge(const std::string& name, const std::string& help, std::vector<std::string> labels) {
  check_names(name, labels);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) {
    Entry e{Type::gauge, {}, {}, {}};
    e.gauge.reset(new GaugeFamily(name, help, std::move(labels), Type::gauge));
    it = families_.emplace(name, std::move(e)).first;
    order_.push_back(name);
  }
  if (!it->second.gauge) throw std::invalid_argument(name + " is not a gauge");
  return *it->second.gauge;
}

HistogramFamily& Registry::histogram(const std::string& name, const std::string& help,
                                     std::vector<std::string> labels, std::vector<double> bounds) {
  check_names(name, labels);
  if (bounds.empty() || !std::is_sorted(bounds.begin(), bounds.end()) ||
      std::adjacent_find(bounds.begin(), bounds.end()) != bounds.end()) {
    throw std::invalid_argument(name + ": bucket bounds must be increasing");
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) {
    Entry e{Type::histogram, {}, {}, {}};
    e.histogram.reset(new HistogramFamily(name, help, std::move(labels), Type::histogram, std::move(bounds)));
    it = families_.emplace(name, std::move(e)).first;
    order_.push_back(name);
  }
  if (!it->second.histogram) throw std::invalid_argument(name + " is not a histogram");
  return *it->second.histogram;
}

std::string Registry::render() const {
  std::string out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& name : order_) {
    const Entry& e = families_.at(name);
    if (e.counter) e.counter->render(&out);
    if (e.gauge) e.gauge->render(&out);
    if (e.histogram) e.histogram->render(&out);
  }
  return out;
}

}  // namespace ebats::metrics
