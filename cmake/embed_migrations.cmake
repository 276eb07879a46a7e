# Writes OUT: a header holding each migration file of IN as a raw string, in order.
set(body "// Generated from daemon/store/migrations/*.sql. Do not edit.\n#pragma once\n#include <string_view>\nnamespace farmhand::daemon::migrations {\ninline constexpr std::string_view kAll[] = {\n")
foreach(file ${IN})
  file(READ ${file} sql)
  string(APPEND body "R\"farmhandsql(${sql})farmhandsql\",\n")
endforeach()
string(APPEND body "};\n}  // namespace farmhand::daemon::migrations\n")
file(WRITE ${OUT} "${body}")
