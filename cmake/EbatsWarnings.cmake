# ebats_warnings: an INTERFACE target linked PRIVATE by every ebats target, so
# consumers of our headers never inherit these flags.
add_library(ebats_warnings INTERFACE)
target_compile_options(ebats_warnings INTERFACE
  -Wall -Wextra             # the baseline the project promises
  -Wshadow                  # a local hiding a member is a classic bug source
  -Wnon-virtual-dtor        # polymorphic types must have virtual destructors
  -Wcast-align -Wunused     # (-Wnull-dereference: false positives in libstdc++ at -O3 with GCC 12)
  -Wformat=2                # printf-style format strings are checked
  $<$<BOOL:${EBATS_WERROR}>:-Werror>)

# Hardening flags for every ebats binary.
add_library(ebats_hardening INTERFACE)
target_compile_options(ebats_hardening INTERFACE -fstack-protector-strong
  $<$<NOT:$<CONFIG:Debug>>:-D_FORTIFY_SOURCE=2>)
target_link_options(ebats_hardening INTERFACE -Wl,-z,relro -Wl,-z,now)

if(EBATS_SANITIZE)
  if(EBATS_SANITIZE MATCHES "thread" AND EBATS_SANITIZE MATCHES "address")
    message(FATAL_ERROR "EBATS_SANITIZE: thread and address sanitizers cannot be combined")
  endif()
  add_compile_options(-fsanitize=${EBATS_SANITIZE} -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${EBATS_SANITIZE})
endif()
