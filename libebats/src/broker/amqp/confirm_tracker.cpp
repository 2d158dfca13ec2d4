#include "broker/amqp/confirm_tracker.h"

#include <algorithm>

namespace ebats {
namespace amqp {

std::vector<uint64_t> ConfirmTracker::reset() {
  std::vector<uint64_t> forgotten;
  for (const Pending& p : pending_) forgotten.push_back(p.cookie);
  pending_.clear();
  next_tag_ = 1;
  ++generation_;
  return forgotten;
}

uint64_t ConfirmTracker::on_publish(std::string message_id, uint64_t cookie) {
  Pending p;
  p.tag = next_tag_++;
  p.cookie = cookie;
  p.message_id = std::move(message_id);
  pending_.push_back(std::move(p));
  return pending_.back().tag;
}

void ConfirmTracker::on_return(std::string_view message_id, std::string_view reply_text) {
  for (Pending& p : pending_) {
    if (!p.returned && p.message_id == message_id) {
      p.returned = true;
      p.return_reason = std::string(reply_text);
      return;
    }
  }
}

void ConfirmTracker::on_ack(uint64_t tag, bool multiple) { settle(tag, multiple, true); }
void ConfirmTracker::on_nack(uint64_t tag, bool multiple) { settle(tag, multiple, false); }

void ConfirmTracker::settle(uint64_t tag, bool multiple, bool ack) {
  // Tags settle in any order; `multiple` covers every unsettled tag <= tag.
  // A tag already settled (or never sent) is ignored.
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->tag > tag) break;
    if (!multiple && it->tag != tag) {
      ++it;
      continue;
    }
    Settled s;
    s.cookie = it->cookie;
    if (it->returned) {
      s.outcome = Outcome::returned;
      s.detail = it->return_reason;
    } else if (!ack) {
      s.outcome = Outcome::nacked;
      s.detail = "the broker refused the message (basic.nack)";
    }
    settled_.push_back(Done{generation_, it->tag, std::move(s)});
    it = pending_.erase(it);
  }
}

std::vector<ConfirmTracker::Settled> ConfirmTracker::take_settled() {
  // Acks of single tags may come in any order; hand them out in tag order.
  std::stable_sort(settled_.begin(), settled_.end(), [](const Done& a, const Done& b) {
    return a.generation != b.generation ? a.generation < b.generation : a.tag < b.tag;
  });
  std::vector<Settled> out;
  out.reserve(settled_.size());
  for (Done& d : settled_) out.push_back(std::move(d.settled));
  settled_.clear();
  return out;
}

}  // namespace amqp
}  // namespace ebats
