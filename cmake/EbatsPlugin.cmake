# ebats_add_plugin(<target> OUTPUT_NAME <name> OUTPUT_DIR <dir> SOURCES <src>...)
#
# Builds a task-handler plugin the way the loader wants it: a MODULE library
# named <name>.so (no lib prefix) in <dir>, linking only ebats_plugin_sdk,
# hidden visibility with only ebats_plugin_entry exported (version script), and
# not group- or world-writable (the loader refuses such files and folders,
# whatever the umask of the build). C sources get the project's warnings minus
# the C++-only ones.
set(EBATS_PLUGIN_VERSION_SCRIPT ${PROJECT_SOURCE_DIR}/plugins/examples/ebats_plugin.map)

function(ebats_add_plugin target)
  cmake_parse_arguments(PLUGIN "" "OUTPUT_NAME;OUTPUT_DIR" "SOURCES" ${ARGN})
  add_library(${target} MODULE ${PLUGIN_SOURCES})
  target_link_libraries(${target} PRIVATE ebats_plugin_sdk)
  if(PLUGIN_SOURCES MATCHES "\\.c(;|$)")
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wshadow -Wformat=2 $<$<BOOL:${EBATS_WERROR}>:-Werror>)
  else()
    target_link_libraries(${target} PRIVATE ebats_warnings)
  endif()
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    OUTPUT_NAME ${PLUGIN_OUTPUT_NAME}
    LIBRARY_OUTPUT_DIRECTORY ${PLUGIN_OUTPUT_DIR}
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  # Export only ebats_plugin_entry (see the comment in the map file).
  target_link_options(${target} PRIVATE -Wl,--version-script=${EBATS_PLUGIN_VERSION_SCRIPT})
  set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS ${EBATS_PLUGIN_VERSION_SCRIPT})
  add_custom_command(TARGET ${target} POST_BUILD
    COMMAND chmod go-w ${PLUGIN_OUTPUT_DIR} $<TARGET_FILE:${target}>
    VERBATIM)
endfunction()
