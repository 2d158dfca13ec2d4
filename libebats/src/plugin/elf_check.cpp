#include "plugin/elf_check.h"

#include <elf.h>
#include <unistd.h>

#include <cstring>

namespace ebats {
namespace {

bool read_at(int fd, void* out, size_t n, off_t at) {
  return ::pread(fd, out, n, at) == static_cast<ssize_t>(n);
}

std::string truncated(off_t size, const char* what, uint64_t end) {
  return "truncated: " + std::to_string(size) + " bytes, but its " + what + " end at byte " + std::to_string(end) +
         " (a copy cut short? deploy by rename: docs/OPERATIONS.md)";
}

}  // namespace

std::string elf_incomplete(int fd, off_t size) {
  Elf64_Ehdr eh{};
  if (size < static_cast<off_t>(sizeof eh) || !read_at(fd, &eh, sizeof eh, 0)) {
    unsigned char magic[SELFMAG] = {};
    if (size >= SELFMAG && read_at(fd, magic, SELFMAG, 0) && std::memcmp(magic, ELFMAG, SELFMAG) == 0) {
      return truncated(size, "ELF header would", sizeof eh);
    }
    return "";
  }
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64) return "";
  const uint64_t file_size = static_cast<uint64_t>(size);
  const uint64_t sections_end = eh.e_shoff + uint64_t{eh.e_shnum} * eh.e_shentsize;
  if (eh.e_shoff != 0 && sections_end > file_size) return truncated(size, "section headers", sections_end);
  const uint64_t programs_end = eh.e_phoff + uint64_t{eh.e_phnum} * eh.e_phentsize;
  if (programs_end > file_size) return truncated(size, "program headers", programs_end);
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) return "";
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph{};
    if (!read_at(fd, &ph, sizeof ph, static_cast<off_t>(eh.e_phoff + uint64_t{i} * sizeof ph))) {
      return truncated(size, "program headers", programs_end);
    }
    if (ph.p_type == PT_LOAD && ph.p_offset + ph.p_filesz > file_size) {
      return truncated(size, "loadable segments", ph.p_offset + ph.p_filesz);
    }
  }
  return "";
}

}  // namespace ebats
