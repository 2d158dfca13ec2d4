/* pickup_producer: the pickup benchmark's long-running producer written in C
 * (bench/run.sh, "pickup"): one ebats publisher kept open (the C API,
 * ebats/publisher_c.h), COUNT events EVENT published one at a time at RATE a
 * second on a fixed schedule, as an application would. For each it prints
 *   <i> <wall ns before the call> <wall ns after it returned>
 * so that bench_tool.py can time publish -> handler start against the
 * handler's own stamp without the Python client's interpreter in the way.
 * Params of event i: {"pickup":RATE,"via":"VIA","i":i}.
 *
 * Usage: pickup_producer CONFIG EVENT RATE COUNT VIA
 * Exit: 0, or 1 with the library's message on stderr. */
#include <ebats/publisher_c.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long long clock_ns(clockid_t which) {
  struct timespec t;
  clock_gettime(which, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int positive(const char *text, long *out) {
  char *end = NULL;
  errno = 0;
  *out = strtol(text, &end, 10);
  return errno == 0 && end != text && *end == '\0' && *out > 0;
}

int main(int argc, char **argv) {
  long rate = 0, count = 0;
  if (argc != 6 || !positive(argv[3], &rate) || !positive(argv[4], &count)) {
    fprintf(stderr, "usage: pickup_producer CONFIG EVENT RATE COUNT VIA (RATE and COUNT positive)\n");
    return 2;
  }
  ebats_publisher *publisher = NULL;
  char *err = NULL;
  if (ebats_publisher_open(argv[1], &publisher, &err) != 0) {
    fprintf(stderr, "pickup_producer: %s\n", err);
    ebats_free_error(err);
    return 1;
  }
  const long long interval = 1000000000LL / rate;
  const long long start = clock_ns(CLOCK_MONOTONIC);
  int rc = 0;
  for (long i = 0; i < count; ++i) {
    const long long at = start + i * interval;
    struct timespec until = {(time_t)(at / 1000000000LL), (long)(at % 1000000000LL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR) {
    }
    char params[128];
    const int len = snprintf(params, sizeof params, "{\"pickup\":%ld,\"via\":\"%s\",\"i\":%ld}", rate, argv[5], i);
    const long long before = clock_ns(CLOCK_REALTIME);
    if (ebats_publish_event(publisher, argv[2], params, (size_t)len, NULL, &err) != 0) {
      fprintf(stderr, "pickup_producer: event %ld: %s\n", i, err);
      ebats_free_error(err);
      rc = 1;
      break;
    }
    const long long after = clock_ns(CLOCK_REALTIME);
    printf("%ld %lld %lld\n", i, before, after);
  }
  ebats_publisher_close(publisher);
  return rc;
}
