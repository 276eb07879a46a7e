# Shared build helpers: warning flags per target and the test registration helper.

function(farmhand_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor)
  if(FARMHAND_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(FARMHAND_SANITIZE)
    target_compile_options(${target} PRIVATE -fsanitize=${FARMHAND_SANITIZE} -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=${FARMHAND_SANITIZE})
  endif()
  target_compile_features(${target} PUBLIC cxx_std_20)
endfunction()

# farmhand_add_test(NAME n SOURCES s... LIBS l... LABELS unit|e2e [TIMEOUT seconds])
function(farmhand_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_executable(${T_NAME} ${T_SOURCES})
  farmhand_warnings(${T_NAME})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main GTest::gmock)
  target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR})
  add_test(NAME ${T_NAME} COMMAND ${T_NAME})
  set_tests_properties(${T_NAME} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "FARMHAND_BIN_DIR=${PROJECT_BINARY_DIR}/bin;FARMHAND_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
endfunction()

# The libraries `target` links, directly or through any library it links: its own
# LINK_LIBRARIES, then INTERFACE_LINK_LIBRARIES transitively. Generator
# expressions are unwrapped to the names inside them ($<LINK_ONLY:yaml-cpp> is
# yaml-cpp), so a conditional dependency still counts.
function(farmhand_link_closure target out_var)
  get_target_property(pending ${target} LINK_LIBRARIES)
  if(NOT pending)
    set(pending "")
  endif()
  set(seen "")
  while(pending)
    list(POP_FRONT pending item)
    # $<LINK_ONLY:a>, $<$<CONFIG:Debug>:a> and ::@(directory-id) scope markers.
    string(REGEX REPLACE "\\$<[^:>]*:" "" item "${item}")
    string(REPLACE ">" "" item "${item}")
    string(REGEX REPLACE "^::@\\([^)]*\\)" "" item "${item}")
    if(item STREQUAL "" OR item IN_LIST seen)
      continue()
    endif()
    list(APPEND seen "${item}")
    if(TARGET ${item})
      get_target_property(aliased ${item} ALIASED_TARGET)
      if(aliased)
        list(APPEND pending ${aliased})
      endif()
      get_target_property(next ${item} INTERFACE_LINK_LIBRARIES)
      if(next)
        list(APPEND pending ${next})
      endif()
    endif()
  endwhile()
  set(${out_var} "${seen}" PARENT_SCOPE)
endfunction()

# Fails the configure when `target` links, however indirectly, a library whose
# name matches `forbidden` (a regex, matched lower case). STYLE.md 2.1: the pure
# libraries' link line is the guard that keeps sockets, SQL, YAML and logging in
# the shells.
function(farmhand_forbid_links target forbidden)
  farmhand_link_closure(${target} closure)
  foreach(item IN LISTS closure)
    string(TOLOWER "${item}" lower)
    if(lower MATCHES "${forbidden}")
      message(FATAL_ERROR "${target} must stay pure but links ${item} (through: ${closure}); "
                          "the code that needs it belongs in a shell library")
    endif()
  endforeach()
endfunction()
