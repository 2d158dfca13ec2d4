/* amqp_limit: the physical-limit program of the RabbitMQ benchmark
 * (bench/run.sh --broker rabbitmq; docs/benchmarks.md).
 *
 * A plain rabbitmq-c client with no framework around it, doing what any task
 * queue on RabbitMQ must do for each task and nothing more:
 *   1. declare one durable quorum queue (x-queue-type: quorum) with a unique
 *      name;
 *   2. publish --tasks persistent messages to it (default exchange, routing
 *      key = queue name) in batches of --batch with publisher confirms: send
 *      a batch, then wait until every message of it is confirmed (basic.ack,
 *      single or `multiple`); a basic.nack is an error;
 *   3. basic.qos(--prefetch) and basic.consume, then for each delivery do
 *      nothing with the body and send one basic.ack for it (no `multiple`,
 *      as a naive client does), until --tasks were acked; then one
 *      synchronous round trip on the consuming channel (basic.qos again), so
 *      RabbitMQ's channel has read every ack before the clock stops;
 *   4. cancel the consumer and delete the queue.
 * Each message carries the properties ebats' task messages carry: delivery
 * mode 2 (persistent), content type application/json, type "task", a
 * timestamp, a 36-character message id, and a body of --body-bytes (run.sh
 * measures one ebats task envelope with --peek and passes its size).
 *
 * Prints one JSON object on stdout: the rates and seconds of phases 2 and 3,
 * the CPU seconds of this process in each, and with --beam-pid those of the
 * RabbitMQ VM too (utime + stime from /proc/PID/stat at the phase's ends).
 *
 * bench/run.sh runs the phases as two processes, so that the drain is timed
 * the way a worker daemon's is: --publish-only does phases 1 and 2 and keeps
 * the queue; --drain-only T0_NS is a fresh process that connects, declares
 * the queue again (as a worker does), does phase 3 and then 4, and counts its
 * drain from T0_NS (CLOCK_REALTIME in ns, `date +%s%N`, taken by the caller
 * just before starting it), with the CPU of the whole process; it prints
 * drain_from_consume_s too, the drain as one process times it.
 *
 * Usage:
 *   amqp_limit [--url amqp://USER@HOST:PORT/VHOST | --host H --port N] [--user U]
 *              [--password P] [--vhost V] [--tasks N] [--batch B] [--prefetch P]
 *              [--body-bytes S] [--queue NAME] [--beam-pid PID]
 *              [--publish-only | --drain-only T0_NS]
 *   amqp_limit [connection options] --peek QUEUE
 *       takes one message from QUEUE (basic.get, auto-ack: it is gone) and
 *       prints its body size and properties as JSON;
 *   amqp_limit [connection options] --delete-queue NAME... --delete-exchange NAME...
 *       deletes those queues and exchanges (both options repeat).
 * The password comes from --password, else $EBATS_BROKER_PASSWORD, else
 * "guest"; never from the URL (as in ebats). Defaults: 127.0.0.1:5672, vhost
 * "/", user guest, --tasks 20000, --batch 1000, --prefetch 1024,
 * --body-bytes 400, queue amqp_limit.<pid>.<ns>. */
#define _GNU_SOURCE
#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum { PUBLISH_CHANNEL = 1, CONSUME_CHANNEL = 2, ADMIN_CHANNEL = 3, MAX_NAMES = 256 };
static const int kWaitSeconds = 30; /* for any one confirm, delivery or RPC */

typedef struct options {
  char host[256];
  int port;
  char vhost[256];
  char user[256];
  const char *password;
  long tasks, batch, prefetch, body_bytes;
  char queue[256];
  long beam_pid;
  int publish_only, drain_only;
  long long t0_ns;
  const char *peek;
  const char *delete_queues[MAX_NAMES];
  int n_delete_queues;
  const char *delete_exchanges[MAX_NAMES];
  int n_delete_exchanges;
} options;

static void die(const char *fmt, ...) {
  va_list ap;
  fputs("amqp_limit: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(1);
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double self_cpu_s(void) {
  struct rusage r;
  getrusage(RUSAGE_SELF, &r);
  return (double)r.ru_utime.tv_sec + (double)r.ru_utime.tv_usec / 1e6 + (double)r.ru_stime.tv_sec +
         (double)r.ru_stime.tv_usec / 1e6;
}

/* utime + stime of a process (all its threads), seconds; -1 if unreadable. */
static double proc_cpu_s(long pid) {
  char path[64], buf[1024];
  FILE *f;
  size_t n;
  const char *p;
  unsigned long long utime = 0, stime = 0;
  if (pid <= 0) return -1;
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  f = fopen(path, "r");
  if (f == NULL) return -1;
  n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  p = strrchr(buf, ')'); /* the command name may hold spaces */
  if (p == NULL) return -1;
  /* After ") ", proc(5)'s fields 3-13 (state; ppid pgrp session tty_nr tpgid;
   * flags minflt cminflt majflt cmajflt), then 14 utime and 15 stime. */
  if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2) return -1;
  return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static void check_reply(amqp_connection_state_t conn, const char *what) {
  amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return;
    case AMQP_RESPONSE_NONE:
      die("%s: no reply", what);
      break;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      die("%s: %s", what, amqp_error_string2(r.library_error));
      break;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const amqp_connection_close_t *m = (const amqp_connection_close_t *)r.reply.decoded;
        die("%s: connection closed by the server: %u %.*s", what, m->reply_code, (int)m->reply_text.len,
            (const char *)m->reply_text.bytes);
      } else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const amqp_channel_close_t *m = (const amqp_channel_close_t *)r.reply.decoded;
        die("%s: channel closed by the server: %u %.*s", what, m->reply_code, (int)m->reply_text.len,
            (const char *)m->reply_text.bytes);
      }
      die("%s: server exception, method 0x%08x", what, r.reply.id);
      break;
  }
}

/* A frame the program did not ask for: a close is fatal, anything else is ignored. */
static void unexpected_frame(const amqp_frame_t *f, const char *during) {
  if (f->frame_type != AMQP_FRAME_METHOD) return;
  if (f->payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
    const amqp_channel_close_t *m = (const amqp_channel_close_t *)f->payload.method.decoded;
    die("%s: channel %u closed by the server: %u %.*s", during, f->channel, m->reply_code, (int)m->reply_text.len,
        (const char *)m->reply_text.bytes);
  }
  if (f->payload.method.id == AMQP_CONNECTION_CLOSE_METHOD) {
    const amqp_connection_close_t *m = (const amqp_connection_close_t *)f->payload.method.decoded;
    die("%s: connection closed by the server: %u %.*s", during, m->reply_code, (int)m->reply_text.len,
        (const char *)m->reply_text.bytes);
  }
  if (f->payload.method.id == AMQP_BASIC_CANCEL_METHOD) die("%s: the server cancelled the consumer", during);
}

static void copy(char *dst, size_t size, const char *src) {
  if (strlen(src) >= size) die("argument too long: %s", src);
  strcpy(dst, src);
}

static long number(const char *opt, const char *text, long min, long max) {
  char *end;
  long v;
  errno = 0;
  v = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v < min || v > max) {
    die("%s takes a whole number from %ld to %ld, got '%s'", opt, min, max, text);
  }
  return v;
}

static void usage(void) {
  fputs("usage: amqp_limit [--url amqp://USER@HOST:PORT/VHOST | --host H --port N] [--user U] [--password P]\n"
        "                  [--vhost V] [--tasks N] [--batch B] [--prefetch P] [--body-bytes S] [--queue NAME]\n"
        "                  [--beam-pid PID] [--publish-only | --drain-only T0_NS]\n"
        "       amqp_limit [connection options] --peek QUEUE\n"
        "       amqp_limit [connection options] --delete-queue NAME... --delete-exchange NAME...\n"
        "(see the comment at the top of bench/amqp_limit.c)\n",
        stderr);
}

static void parse_url(options *o, const char *text) {
  struct amqp_connection_info info;
  char *url = strdup(text);
  if (url == NULL) die("out of memory");
  amqp_default_connection_info(&info);
  if (amqp_parse_url(url, &info) != AMQP_STATUS_OK) die("--url '%s' is not an amqp:// URL", text);
  if (info.ssl) die("--url: amqps:// is not supported here; use a plain amqp:// listener");
  copy(o->host, sizeof o->host, info.host);
  o->port = info.port;
  copy(o->vhost, sizeof o->vhost, info.vhost);
  copy(o->user, sizeof o->user, info.user); /* the URL's password, if any, is ignored */
  free(url);
}

static void parse_args(options *o, int argc, char **argv) {
  int i;
  const char *env = getenv("EBATS_BROKER_PASSWORD");
  memset(o, 0, sizeof *o);
  copy(o->host, sizeof o->host, "127.0.0.1");
  o->port = 5672;
  copy(o->vhost, sizeof o->vhost, "/");
  copy(o->user, sizeof o->user, "guest");
  o->password = env != NULL && env[0] != '\0' ? env : "guest";
  o->tasks = 20000;
  o->batch = 1000;
  o->prefetch = 1024;
  o->body_bytes = 400;
  snprintf(o->queue, sizeof o->queue, "amqp_limit.%ld.%.0f", (long)getpid(), now_s() * 1e9);
  for (i = 1; i < argc; ++i) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage();
      exit(0);
    }
    if (strcmp(a, "--publish-only") == 0) {
      o->publish_only = 1;
      continue;
    }
    if (v == NULL) {
      usage();
      die("%s needs a value", a);
    }
    ++i;
    if (strcmp(a, "--url") == 0) parse_url(o, v);
    else if (strcmp(a, "--host") == 0) copy(o->host, sizeof o->host, v);
    else if (strcmp(a, "--port") == 0) o->port = (int)number(a, v, 1, 65535);
    else if (strcmp(a, "--vhost") == 0) copy(o->vhost, sizeof o->vhost, v);
    else if (strcmp(a, "--user") == 0) copy(o->user, sizeof o->user, v);
    else if (strcmp(a, "--password") == 0) o->password = v;
    else if (strcmp(a, "--tasks") == 0) o->tasks = number(a, v, 1, 100000000);
    else if (strcmp(a, "--batch") == 0) o->batch = number(a, v, 1, 1000000);
    else if (strcmp(a, "--prefetch") == 0) o->prefetch = number(a, v, 1, 65535);
    else if (strcmp(a, "--body-bytes") == 0) o->body_bytes = number(a, v, 0, 64 << 20);
    else if (strcmp(a, "--queue") == 0) copy(o->queue, sizeof o->queue, v);
    else if (strcmp(a, "--beam-pid") == 0) o->beam_pid = number(a, v, 1, 1L << 30);
    else if (strcmp(a, "--peek") == 0) o->peek = v;
    else if (strcmp(a, "--drain-only") == 0) {
      o->drain_only = 1;
      o->t0_ns = strtoll(v, NULL, 10);
      if (o->t0_ns <= 0) die("--drain-only takes the start time in ns since the epoch (date +%%s%%N), got '%s'", v);
    }
    else if (strcmp(a, "--delete-queue") == 0) {
      if (o->n_delete_queues == MAX_NAMES) die("too many --delete-queue");
      o->delete_queues[o->n_delete_queues++] = v;
    } else if (strcmp(a, "--delete-exchange") == 0) {
      if (o->n_delete_exchanges == MAX_NAMES) die("too many --delete-exchange");
      o->delete_exchanges[o->n_delete_exchanges++] = v;
    } else {
      usage();
      die("unknown option %s", a);
    }
  }
}

static amqp_connection_state_t connect_broker(const options *o) {
  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_t *sock;
  struct timeval timeout = {kWaitSeconds, 0};
  int rc;
  if (conn == NULL) die("out of memory");
  sock = amqp_tcp_socket_new(conn);
  if (sock == NULL) die("cannot create a TCP socket");
  rc = amqp_socket_open_noblock(sock, o->host, o->port, &timeout);
  if (rc != AMQP_STATUS_OK) die("cannot connect to %s:%d: %s", o->host, o->port, amqp_error_string2(rc));
  amqp_set_rpc_timeout(conn, &timeout);
  /* frame_max 128 KiB (as ebats), heartbeats off: every phase is short. */
  {
    amqp_rpc_reply_t r =
        amqp_login(conn, o->vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, o->user, o->password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
      die("login to %s:%d vhost %s as %s failed (%s); check the password (--password or $EBATS_BROKER_PASSWORD)",
          o->host, o->port, o->vhost, o->user,
          r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION ? amqp_error_string2(r.library_error) : "refused");
    }
  }
  return conn;
}

static void open_channel(amqp_connection_state_t conn, amqp_channel_t ch) {
  amqp_channel_open(conn, ch);
  check_reply(conn, "opening a channel");
}

/* Server property `key` (e.g. "version", "platform") as text, or "?". */
static void server_property(amqp_connection_state_t conn, const char *key, char *out, size_t size) {
  const amqp_table_t *t = amqp_get_server_properties(conn);
  int i;
  snprintf(out, size, "?");
  for (i = 0; t != NULL && i < t->num_entries; ++i) {
    const amqp_table_entry_t *e = &t->entries[i];
    if (e->key.len == strlen(key) && memcmp(e->key.bytes, key, e->key.len) == 0 &&
        (e->value.kind == AMQP_FIELD_KIND_UTF8 || e->value.kind == AMQP_FIELD_KIND_BYTES)) {
      snprintf(out, size, "%.*s", (int)e->value.value.bytes.len, (const char *)e->value.value.bytes.bytes);
    }
  }
}

/* Writes s as a JSON string (the names here are ASCII; anything else is escaped bytewise). */
static void json_string(const char *s, size_t len) {
  size_t i;
  putchar('"');
  for (i = 0; i < len; ++i) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') printf("\\%c", c);
    else if (c < 0x20 || c >= 0x7f) printf("\\u%04x", c);
    else putchar(c);
  }
  putchar('"');
}

static void close_connection(amqp_connection_state_t conn) {
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);
}

static int run_peek(const options *o) {
  amqp_connection_state_t conn = connect_broker(o);
  amqp_rpc_reply_t r;
  amqp_message_t msg;
  open_channel(conn, ADMIN_CHANNEL);
  r = amqp_basic_get(conn, ADMIN_CHANNEL, amqp_cstring_bytes(o->peek), 1);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) check_reply(conn, "basic.get");
  if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) die("--peek: queue %s is empty", o->peek);
  r = amqp_read_message(conn, ADMIN_CHANNEL, &msg, 0);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) die("--peek: reading the message failed");
  printf("{\"queue\":");
  json_string(o->peek, strlen(o->peek));
  printf(",\"body_bytes\":%zu,\"persistent\":%s,\"content_type\":", msg.body.len,
         (msg.properties._flags & AMQP_BASIC_DELIVERY_MODE_FLAG) && msg.properties.delivery_mode == 2 ? "true"
                                                                                                     : "false");
  if (msg.properties._flags & AMQP_BASIC_CONTENT_TYPE_FLAG) {
    json_string((const char *)msg.properties.content_type.bytes, msg.properties.content_type.len);
  } else {
    printf("null");
  }
  printf(",\"type\":");
  if (msg.properties._flags & AMQP_BASIC_TYPE_FLAG) {
    json_string((const char *)msg.properties.type.bytes, msg.properties.type.len);
  } else {
    printf("null");
  }
  printf(",\"timestamp\":%s,\"message_id_bytes\":%zu,\"header_keys\":[",
         (msg.properties._flags & AMQP_BASIC_TIMESTAMP_FLAG) ? "true" : "false",
         (msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) ? msg.properties.message_id.len : (size_t)0);
  if (msg.properties._flags & AMQP_BASIC_HEADERS_FLAG) {
    int i;
    for (i = 0; i < msg.properties.headers.num_entries; ++i) {
      const amqp_bytes_t *k = &msg.properties.headers.entries[i].key;
      if (i > 0) putchar(',');
      json_string((const char *)k->bytes, k->len);
    }
  }
  printf("],\"body\":");
  json_string((const char *)msg.body.bytes, msg.body.len);
  printf("}\n");
  amqp_destroy_message(&msg);
  close_connection(conn);
  return 0;
}

static int run_delete(const options *o) {
  amqp_connection_state_t conn = connect_broker(o);
  int i;
  open_channel(conn, ADMIN_CHANNEL);
  for (i = 0; i < o->n_delete_queues; ++i) {
    amqp_queue_delete(conn, ADMIN_CHANNEL, amqp_cstring_bytes(o->delete_queues[i]), 0, 0);
    check_reply(conn, "deleting a queue");
  }
  for (i = 0; i < o->n_delete_exchanges; ++i) {
    amqp_exchange_delete(conn, ADMIN_CHANNEL, amqp_cstring_bytes(o->delete_exchanges[i]), 0);
    check_reply(conn, "deleting an exchange");
  }
  printf("{\"deleted_queues\":%d,\"deleted_exchanges\":%d}\n", o->n_delete_queues, o->n_delete_exchanges);
  close_connection(conn);
  return 0;
}

/* Waits until every message of the batch [first, first + n) is confirmed. */
static void wait_confirms(amqp_connection_state_t conn, uint64_t first, long n, char *confirmed) {
  long done = 0;
  struct timeval timeout = {kWaitSeconds, 0};
  if (n <= 0) return;
  memset(confirmed, 0, (size_t)n);
  while (done < n) {
    amqp_frame_t f;
    int rc = amqp_simple_wait_frame_noblock(conn, &f, &timeout);
    if (rc == AMQP_STATUS_TIMEOUT) die("no publisher confirm for %d s (%ld of %ld confirmed)", kWaitSeconds, done, n);
    if (rc != AMQP_STATUS_OK) die("waiting for confirms: %s", amqp_error_string2(rc));
    if (f.frame_type != AMQP_FRAME_METHOD || f.channel != PUBLISH_CHANNEL) {
      unexpected_frame(&f, "waiting for confirms");
      continue;
    }
    if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
      const amqp_basic_ack_t *ack = (const amqp_basic_ack_t *)f.payload.method.decoded;
      uint64_t lo = ack->multiple ? first : ack->delivery_tag;
      uint64_t tag;
      if (ack->delivery_tag < first || ack->delivery_tag >= first + (uint64_t)n) {
        die("confirm for delivery tag %" PRIu64 " outside the batch %" PRIu64 "..%" PRIu64, ack->delivery_tag, first,
            first + (uint64_t)n - 1);
      }
      for (tag = lo; tag <= ack->delivery_tag; ++tag) {
        if (!confirmed[tag - first]) {
          confirmed[tag - first] = 1;
          ++done;
        }
      }
    } else if (f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
      const amqp_basic_nack_t *nack = (const amqp_basic_nack_t *)f.payload.method.decoded;
      die("RabbitMQ nacked delivery tag %" PRIu64 "%s", nack->delivery_tag, nack->multiple ? " (multiple)" : "");
    } else {
      unexpected_frame(&f, "waiting for confirms");
    }
  }
}

typedef struct phase {
  double seconds, client_cpu_s, beam_cpu_s;
} phase;

static void print_phase(const char *name, const phase *p, long tasks, int last) {
  printf("\"%s\":{\"seconds\":%.6f,\"per_s\":%.1f,\"client_cpu_s\":%.3f,\"beam_cpu_s\":", name, p->seconds,
         (double)tasks / p->seconds, p->client_cpu_s);
  if (p->beam_cpu_s >= 0) printf("%.3f", p->beam_cpu_s);
  else printf("null");
  printf("}%s", last ? "" : ",");
}

/* Connects, opens the channels and puts the publishing one in confirm mode.
 * version/platform receive the server's properties (64 bytes each). */
static amqp_connection_state_t open_session(const options *o, char *version, char *platform) {
  amqp_connection_state_t conn = connect_broker(o);
  server_property(conn, "version", version, 64);
  server_property(conn, "platform", platform, 64);
  open_channel(conn, PUBLISH_CHANNEL);
  open_channel(conn, CONSUME_CHANNEL);
  amqp_confirm_select(conn, PUBLISH_CHANNEL);
  check_reply(conn, "confirm.select");
  return conn;
}

/* Phase 1: declares the durable quorum queue (it may exist already). */
static void declare_queue(amqp_connection_state_t conn, const options *o) {
  amqp_table_entry_t arg;
  amqp_table_t args;
  arg.key = amqp_cstring_bytes("x-queue-type");
  arg.value.kind = AMQP_FIELD_KIND_UTF8;
  arg.value.value.bytes = amqp_cstring_bytes("quorum");
  args.num_entries = 1;
  args.entries = &arg;
  amqp_queue_declare(conn, PUBLISH_CHANNEL, amqp_cstring_bytes(o->queue), 0, 1, 0, 0, args);
  check_reply(conn, "declaring the quorum queue");
}

/* Phase 2: publishes --tasks messages in confirmed batches. */
static phase publish_all(amqp_connection_state_t conn, const options *o) {
  amqp_basic_properties_t props;
  char *body, *confirmed;
  char message_id[40];
  uint64_t next_tag = 1;
  long sent = 0;
  phase pub;
  double t0, c0, b0;
  body = malloc((size_t)o->body_bytes + 1);
  confirmed = malloc((size_t)o->batch);
  if (body == NULL || confirmed == NULL) die("out of memory");
  memset(body, 'x', (size_t)o->body_bytes);
  body[o->body_bytes] = '\0';
  memset(&props, 0, sizeof props);
  props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
                 AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
  props.delivery_mode = 2;
  props.content_type = amqp_cstring_bytes("application/json");
  props.type = amqp_cstring_bytes("task");
  props.timestamp = (uint64_t)time(NULL);

  t0 = now_s();
  c0 = self_cpu_s();
  b0 = proc_cpu_s(o->beam_pid);
  while (sent < o->tasks) {
    long n = o->tasks - sent < o->batch ? o->tasks - sent : o->batch;
    uint64_t first = next_tag;
    long i;
    for (i = 0; i < n; ++i) {
      amqp_bytes_t b = {(size_t)o->body_bytes, body};
      int rc;
      /* A UUID-shaped id, different for every message. */
      snprintf(message_id, sizeof message_id, "00000000-0000-4000-8000-%012lx", sent + i);
      props.message_id = amqp_cstring_bytes(message_id);
      rc = amqp_basic_publish(conn, PUBLISH_CHANNEL, amqp_empty_bytes, amqp_cstring_bytes(o->queue), 0, 0, &props, b);
      if (rc != AMQP_STATUS_OK) die("basic.publish: %s", amqp_error_string2(rc));
      ++next_tag;
    }
    wait_confirms(conn, first, n, confirmed);
    sent += n;
    amqp_maybe_release_buffers(conn);
  }
  pub.seconds = now_s() - t0;
  pub.client_cpu_s = self_cpu_s() - c0;
  pub.beam_cpu_s = b0 >= 0 ? proc_cpu_s(o->beam_pid) - b0 : -1;
  free(body);
  free(confirmed);
  return pub;
}

typedef struct drained {
  double consume_s; /* now_s() when basic.consume was sent */
  double first_s;   /* now_s() at the first delivery */
  double end_s;     /* now_s() once RabbitMQ has read the last ack */
  long redelivered;
} drained;

/* Phase 3: basic.qos and basic.consume, one basic.ack per delivery after a
 * no-op, until --tasks were acked; then one round trip on the channel. */
static drained drain_all(amqp_connection_state_t conn, const options *o) {
  struct timeval timeout = {kWaitSeconds, 0};
  volatile unsigned char sink = 0;
  long acked = 0;
  drained d = {0, 0, 0, 0};
  d.consume_s = now_s();
  amqp_basic_qos(conn, CONSUME_CHANNEL, 0, (uint16_t)o->prefetch, 0);
  check_reply(conn, "basic.qos");
  amqp_basic_consume(conn, CONSUME_CHANNEL, amqp_cstring_bytes(o->queue), amqp_cstring_bytes("amqp_limit"), 0, 0, 0,
                     amqp_empty_table);
  check_reply(conn, "basic.consume");
  while (acked < o->tasks) {
    amqp_envelope_t env;
    amqp_rpc_reply_t r;
    amqp_maybe_release_buffers(conn);
    r = amqp_consume_message(conn, &env, &timeout, 0);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
      if (acked == 0) d.first_s = now_s();
      if (env.message.body.len > 0) sink ^= ((const unsigned char *)env.message.body.bytes)[0]; /* the no-op */
      if (env.redelivered) ++d.redelivered;
      if (amqp_basic_ack(conn, CONSUME_CHANNEL, env.delivery_tag, 0) != AMQP_STATUS_OK) die("basic.ack failed");
      amqp_destroy_envelope(&env);
      ++acked;
    } else if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
      amqp_frame_t f;
      if (amqp_simple_wait_frame(conn, &f) != AMQP_STATUS_OK) die("reading a frame failed");
      unexpected_frame(&f, "consuming");
    } else if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT) {
      die("no delivery for %d s: %ld of %ld acked", kWaitSeconds, acked, o->tasks);
    } else {
      die("consuming: %s", r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION ? amqp_error_string2(r.library_error)
                                                                            : "server exception");
    }
  }
  /* One round trip on the consuming channel: its reply comes after every ack was read. */
  amqp_basic_qos(conn, CONSUME_CHANNEL, 0, (uint16_t)o->prefetch, 0);
  check_reply(conn, "basic.qos after the last ack");
  d.end_s = now_s();
  (void)sink;
  return d;
}

/* Phase 4: cancels the consumer, deletes the queue, closes the connection. */
static void clean_up(amqp_connection_state_t conn, const options *o) {
  amqp_basic_cancel(conn, CONSUME_CHANNEL, amqp_cstring_bytes("amqp_limit"));
  check_reply(conn, "basic.cancel");
  amqp_queue_delete(conn, PUBLISH_CHANNEL, amqp_cstring_bytes(o->queue), 0, 0);
  check_reply(conn, "deleting the queue");
  close_connection(conn);
}

static void print_head(const options *o, const char *version, const char *platform, long redelivered) {
  printf("{\"queue\":");
  json_string(o->queue, strlen(o->queue));
  printf(",\"rabbitmq\":");
  json_string(version, strlen(version));
  printf(",\"platform\":");
  json_string(platform, strlen(platform));
  printf(",\"tasks\":%ld,\"batch\":%ld,\"prefetch\":%ld,\"body_bytes\":%ld,", o->tasks, o->batch, o->prefetch,
         o->body_bytes);
  if (redelivered >= 0) printf("\"redelivered\":%ld,", redelivered);
}

static double realtime_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* --drain-only: a process of its own, as a worker daemon is: the clock runs
 * from --t0-ns (CLOCK_REALTIME, taken by the caller just before starting this
 * program), so exec, connecting and the queue's declaration count; its CPU is
 * the whole process's. */
static int run_drain_only(const options *o) {
  char version[64], platform[64];
  const double b0 = proc_cpu_s(o->beam_pid); /* RabbitMQ did nothing for this process before now */
  const double mono_at = now_s(), real_at = realtime_ns();
  amqp_connection_state_t conn = open_session(o, version, platform);
  drained d;
  phase drain;
  declare_queue(conn, o);
  d = drain_all(conn, o);
  drain.seconds = d.end_s - mono_at + (real_at - (double)o->t0_ns) / 1e9;
  drain.client_cpu_s = self_cpu_s();
  drain.beam_cpu_s = b0 >= 0 ? proc_cpu_s(o->beam_pid) - b0 : -1;
  clean_up(conn, o);
  print_head(o, version, platform, d.redelivered);
  print_phase("drain", &drain, o->tasks, 0);
  printf("\"drain_from_consume_s\":%.6f,\"drain_from_first_s\":%.6f,\"drain_from_first_per_s\":%.1f}\n",
         d.end_s - d.consume_s, d.end_s - d.first_s, (double)(o->tasks - 1) / (d.end_s - d.first_s));
  fprintf(stderr, "amqp_limit: drained %ld messages in %.1f ms from the start of this process (%.0f/s), %.1f ms from "
                  "basic.consume; client CPU %.1f us/task\n",
          o->tasks, drain.seconds * 1e3, (double)o->tasks / drain.seconds, (d.end_s - d.consume_s) * 1e3,
          drain.client_cpu_s * 1e6 / (double)o->tasks);
  return 0;
}

int main(int argc, char **argv) {
  options o;
  amqp_connection_state_t conn;
  char version[64], platform[64];
  phase pub, drain;
  drained d;
  double c0, b0;

  parse_args(&o, argc, argv);
  if (o.peek != NULL) return run_peek(&o);
  if (o.n_delete_queues > 0 || o.n_delete_exchanges > 0) return run_delete(&o);
  if (o.drain_only) return run_drain_only(&o);

  conn = open_session(&o, version, platform);
  declare_queue(conn, &o);
  pub = publish_all(conn, &o);
  if (o.publish_only) {
    close_connection(conn);
    print_head(&o, version, platform, -1);
    print_phase("publish", &pub, o.tasks, 1);
    printf("}\n");
    return 0;
  }
  c0 = self_cpu_s();
  b0 = proc_cpu_s(o.beam_pid);
  d = drain_all(conn, &o);
  drain.seconds = d.end_s - d.consume_s;
  drain.client_cpu_s = self_cpu_s() - c0;
  drain.beam_cpu_s = b0 >= 0 ? proc_cpu_s(o.beam_pid) - b0 : -1;
  clean_up(conn, &o);
  print_head(&o, version, platform, d.redelivered);
  print_phase("publish", &pub, o.tasks, 0);
  print_phase("drain", &drain, o.tasks, 0);
  printf("\"drain_from_first_s\":%.6f,\"drain_from_first_per_s\":%.1f,", d.end_s - d.first_s,
         (double)(o.tasks - 1) / (d.end_s - d.first_s));
  printf("\"tasks_per_s\":%.1f}\n", (double)o.tasks / (pub.seconds + drain.seconds));
  fprintf(stderr, "amqp_limit: %ld messages of %ld bytes: publish %.0f/s (batches of %ld), drain %.0f/s "
                  "(prefetch %ld), client CPU %.1f us/task in the drain\n",
          o.tasks, o.body_bytes, (double)o.tasks / pub.seconds, o.batch, (double)o.tasks / drain.seconds,
          o.prefetch, drain.client_cpu_s * 1e6 / (double)o.tasks);
  return 0;
}
