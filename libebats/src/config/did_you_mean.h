// Spelling hints for unknown names: "unknown key 'tiemout' (did you mean 'timeout'?)".
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ebats {

// Levenshtein distance (insert, delete, substitute; each costs 1).
size_t edit_distance(std::string_view a, std::string_view b);

// The candidate closest to `word` when it is within `max_distance` edits,
// otherwise empty. Ties go to the earlier candidate.
std::string closest_match(std::string_view word, const std::vector<std::string_view>& candidates,
                          size_t max_distance = 2);

}  // namespace ebats
