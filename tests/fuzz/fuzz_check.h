// FUZZ_CHECK: the fuzz targets' invariant check. On failure it prints the
// condition and aborts, so libFuzzer records the input as a crash (it is on
// in every build mode: no assert(), which NDEBUG would remove).
#pragma once

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                                        \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      std::fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);         \
      std::abort();                                                                             \
    }                                                                                           \
  } while (0)
