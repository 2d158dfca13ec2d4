# Included by the top-level CMakeLists.txt when EBATS_FUZZ is ON, before any
# target is defined: every ebats source is compiled with libFuzzer's coverage
# instrumentation (fuzzer-no-link) and AddressSanitizer + UndefinedBehaviorSanitizer;
# the fuzz targets themselves link -fsanitize=fuzzer (tests/fuzz/CMakeLists.txt).
# Clang only: GCC has no libFuzzer. scripts/fuzz.sh configures such a build.
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "EBATS_FUZZ needs clang (libFuzzer); configure with CC=clang CXX=clang++, "
                      "or run scripts/fuzz.sh")
endif()
if(EBATS_SANITIZE)
  message(FATAL_ERROR "EBATS_FUZZ brings its own sanitizers (address,undefined); leave EBATS_SANITIZE empty")
endif()
# -fno-sanitize-recover: a UBSan report is a crash the fuzzer keeps, not a line it scrolls past.
# ubsan_ignorelist.txt: one known report in RapidJSON's header, not in ebats.
add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                    -fsanitize-ignorelist=${CMAKE_CURRENT_LIST_DIR}/ubsan_ignorelist.txt -fno-omit-frame-pointer)
add_link_options(-fsanitize=address,undefined)
