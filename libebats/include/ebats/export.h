// EBATS_EXPORT marks the symbols that libebats.so exports; everything else is
// hidden (-fvisibility=hidden), so users cannot depend on internals by accident.
#pragma once
#define EBATS_EXPORT __attribute__((visibility("default")))
