// shop.so: the original Ebats article's shop tasks, written with the C++ SDK.
//
// Registered in config/ebats.yaml under the events that trigger them, e.g.
// "orderCreated" -> closeOrder (delayed), virtualShipping, sendReceipt.
// Every task needs params.order_id (an integer or a string); the handlers are
// idempotent by order, as every handler must be (a task can run twice after a
// worker crash; t.id() is the same on every attempt).
#include <chrono>
#include <string>

#include <ebats/plugin.hpp>

namespace {

// params.order_id as text; ebats::Fail (no retry) when it is missing, because
// retrying cannot make it appear.
std::string order_id(ebats::Task& t) {
  const auto& p = t.params();
  if (p.IsObject() && p.HasMember("order_id")) {
    const auto& v = p["order_id"];
    if (v.IsInt64()) return std::to_string(v.GetInt64());
    if (v.IsUint64()) return std::to_string(v.GetUint64());
    if (v.IsString() && v.GetStringLength() > 0) return std::string(v.GetString(), v.GetStringLength());
  }
  throw ebats::Fail("order_id missing");
}

bool flag(ebats::Task& t, const char* key) {
  const auto& p = t.params();
  return p.IsObject() && p.HasMember(key) && p[key].IsBool() && p[key].GetBool();
}

// Closes an order that is still unpaid when the delayed task comes due.
// A real plugin would run "UPDATE orders SET status='closed' WHERE id=? AND
// status='unpaid'", which is idempotent by construction.
void close_order(ebats::Task& t) {
  const std::string id = order_id(t);
  t.log(ebats::LogLevel::info, "closing unpaid order " + id);
  t.message("order " + id + " closed");
}

// Ships a virtual good. With "warehouse_busy": true the first attempt asks
// for a retry in 2 s, which shows the retry path in the demo.
void virtual_shipping(ebats::Task& t) {
  const std::string id = order_id(t);
  if (flag(t, "warehouse_busy") && t.attempt() == 0) {
    throw ebats::Retry(std::chrono::seconds(2), "warehouse busy");
  }
  t.message("shipped order " + id);
}

// The task of the custom-scheduler example: syncs an order to another system.
void order_async(ebats::Task& t) {
  const std::string id = order_id(t);
  if (t.should_stop()) throw ebats::Retry("worker stopping before order " + id + " was synced");
  t.message("synced order " + id);
}

void send_receipt(ebats::Task& t) {
  const std::string id = order_id(t);
  t.message("receipt sent for order " + id);
}

}  // namespace

EBATS_PLUGIN("shop", "1.0.0",
             {"closeOrder", close_order},
             {"virtualShipping", virtual_shipping},
             {"orderAsync", order_async},
             {"sendReceipt", send_receipt})
