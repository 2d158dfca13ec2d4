// elf_incomplete: whether a plugin file is a whole ELF object, checked before
// dlopen(). dlopen() maps the segments its program headers name; when the file
// is shorter (a copy cut short), touching them kills the process with SIGBUS
// instead of failing. The section header table comes last in a linked .so, so
// a file that holds it and every loadable segment is complete.
#pragma once

#include <sys/types.h>

#include <string>

namespace ebats {

// "" when the open file `fd` of `size` bytes is a complete 64-bit ELF object,
// or when it is no 64-bit ELF (dlopen() then says what it is); otherwise why
// not, e.g. "truncated: 4096 bytes, but its section headers end at 14336".
std::string elf_incomplete(int fd, off_t size);

}  // namespace ebats
