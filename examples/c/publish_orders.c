/* publish_orders.c: the C producer API (ebats/publisher_c.h) on the seed's
 * shop: an order is created (its close is delayed by the config), paid (two
 * tasks fan out) and synced (a task created directly), the last two in one
 * batch. The config path comes from $EBATS_CONFIG.
 *
 *   cc publish_orders.c -lebats -o publish_orders && EBATS_CONFIG=/etc/ebats/ebats.yaml ./publish_orders */
#include <ebats/publisher_c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* After a call: prints and frees its error, if it failed, and says whether it did. */
static int failed(int rc, char **err) {
  if (rc == 0) return 0;
  fprintf(stderr, "publish_orders: %s\n", *err ? *err : "out of memory");
  ebats_free_error(*err);
  *err = NULL;
  return 1;
}

int main(void) {
  const char *config = getenv("EBATS_CONFIG");
  if (config == NULL) config = "/etc/ebats/ebats.yaml";
  if (ebats_c_api_version() < EBATS_C_API_VERSION) {
    fprintf(stderr, "publish_orders: libebats %s is older than this program\n", ebats_version());
    return 1;
  }
  char *err = NULL;
  ebats_publisher *p = NULL;
  if (failed(ebats_publisher_open(config, &p, &err), &err)) return 1;

  /* One event; its registration delays closeOrder. The caller picks the id,
   * so publishing again after a doubtful failure creates nothing twice. */
  ebats_options *o = ebats_options_new();
  char id[37];
  const char *created = "{\"order_id\":\"FB138020392193312\"}";
  int rc = o ? ebats_options_set_event_id(o, "0b7e4a52-9c1f-4d7e-8a34-2f6c1d9e0a11", &err) : -1;
  if (rc == 0) rc = ebats_options_set_trace_id(o, "checkout-7", &err);
  if (rc == 0) rc = ebats_publish_event_opts(p, "order_create", created, strlen(created), o, id, &err);
  ebats_options_free(o);
  if (failed(rc, &err)) return 1;
  printf("event %s\n", id);

  /* The payment and a direct task, committed together. */
  ebats_batch *b = ebats_batch_new(p);
  const char *paid = "{\"order_id\":\"FB138020392193312\"}";
  rc = b ? ebats_batch_add_event(b, "order_paied", paid, strlen(paid), NULL, id, &err) : -1;
  if (rc == 0) printf("event %s\n", id);
  if (rc == 0) rc = ebats_batch_add_task(b, "demo", "orderAsync", paid, strlen(paid), NULL, id, &err);
  if (rc == 0) printf("task %s\n", id);
  if (rc == 0) rc = ebats_batch_commit(b, &err);
  ebats_batch_free(b);
  ebats_publisher_close(p);
  return failed(rc, &err);
}
