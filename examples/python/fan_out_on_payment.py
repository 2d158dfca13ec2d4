"""Fan-out on payment: one `order_paied` event, one task per registration (virtualShipping, sendReceipt).

Written as with the original PHP library: (new Event('order_paied'))->setOptions([...])->publish().
The config comes from $EBATS_CONFIG (default /etc/ebats/ebats.yaml).
"""
import ebats

event_id = ebats.Event("order_paied").set_options({"order_id": "FB138020392193312"}).publish()
print("order_paied published:", event_id)
