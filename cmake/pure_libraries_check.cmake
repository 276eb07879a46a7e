# cmake -DNM=nm "-DLIBS=a.a;b.a" -P pure_libraries_check.cmake
#
# Fails when a pure library's archive refers to a symbol of a library the pure
# code must not use (STYLE.md 2.1): the configure-time link guard sees only the
# link lines, this sees what the code calls, even through a header found in
# /usr/include without a link.
# C++ namespaces anywhere in a demangled name; C functions by their prefix.
# Starting a process (fork, clone, exec, posix_spawn) belongs in farmhand_os.
set(forbidden
  "spdlog::|YAML::|google::protobuf|OpenImageIO|Imf_[0-9]|zmq::|( U )(sqlite3_|zmq_|av_|avcodec_|avformat_|sws_|sd_|clone$|fork$|vfork$|execv|posix_spawn)")
set(failed "")
foreach(lib IN LISTS LIBS)
  execute_process(COMMAND ${NM} -C --undefined-only ${lib}
    OUTPUT_VARIABLE symbols ERROR_VARIABLE errors RESULT_VARIABLE code)
  if(NOT code EQUAL 0)
    message(FATAL_ERROR "cannot read ${lib}: ${errors}")
  endif()
  string(REPLACE "\n" ";" lines "${symbols}")
  foreach(line IN LISTS lines)
    if(line MATCHES "${forbidden}")
      string(STRIP "${line}" line)
      list(APPEND failed "${lib}: ${line}")
    endif()
  endforeach()
endforeach()
if(failed)
  list(JOIN failed "\n" text)
  message(FATAL_ERROR "pure libraries refer to shell-only symbols:\n${text}")
endif()
