// Metrics registry: counters, gauges and histograms with label sets, rendered
// in the Prometheus text exposition format (version 0.0.4).
//
// Threads: a family is created and a label set looked up under a mutex; the
// returned Counter / Gauge / Histogram stays valid as long as the Registry
// and is updated with atomics, so the daemon's loop writes while the metrics
// HTTP thread calls render(). One writer per metric is assumed for gauges
// and histogram sums (set, not read-modify-write across threads).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace ebats::metrics {

class Counter {
 public:
  void inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  void add(double d);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(const std::vector<double>* bounds);
  void observe(double v);
  // Per-bucket (not cumulative) counts; the last one is +Inf.
  std::vector<uint64_t> bucket_counts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }
  uint64_t count() const;
  const std::vector<double>& bounds() const { return *bounds_; }

 private:
  const std::vector<double>* bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_->size() + 1
  std::atomic<double> sum_{0};
};

enum class Type { counter, gauge, histogram };

// One metric name with its label names; one child per label-value tuple.
template <class M>
class Family {
 public:
  // The metric for these label values (as many as label names), created at 0.
  // Past 10,000 label sets a new one gets the shared series whose values are
  // all "_overflow" (docs/METRICS.md).
  M& labels(const std::vector<std::string>& values);
  M& labels() { return labels({}); }

 private:
  friend class Registry;
  Family(std::string name, std::string help, std::vector<std::string> label_names, Type type,
         std::vector<double> bounds = {})
      : name_(std::move(name)), help_(std::move(help)), label_names_(std::move(label_names)), type_(type),
        bounds_(std::move(bounds)) {}
  void render(std::string* out) const;

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const Type type_;
  const std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<M>> children_;
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

// Bucket bounds in seconds for durations from a millisecond to a few minutes.
const std::vector<double>& duration_buckets();

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The family of that name, created on first use. Asking again with the same
  // name returns the same family (the type, labels and buckets given first
  // stay). Names and label names must match [a-zA-Z_:][a-zA-Z0-9_:]*.
  CounterFamily& counter(const std::string& name, const std::string& help, std::vector<std::string> labels = {});
  GaugeFamily& gauge(const std::string& name, const std::string& help, std::vector<std::string> labels = {});
  HistogramFamily& histogram(const std::string& name, const std::string& help, std::vector<std::string> labels,
                             std::vector<double> bounds);

  // Every family in the order created, as exposition text.
  std::string render() const;

 private:
  mutable std::mutex mu_;
  struct Entry {
    Type type;
    std::unique_ptr<CounterFamily> counter;
    std::unique_ptr<GaugeFamily> gauge;
    std::unique_ptr<HistogramFamily> histogram;
  };
  std::vector<std::string> order_;
  std::map<std::string, Entry> families_;
};

// Exposition-format pieces, exposed for tests.
std::string escape_label_value(const std::string& v);  // \ " and newline
std::string format_value(double v);                    // shortest round-trip, +Inf, -Inf, NaN

}  // namespace ebats::metrics
