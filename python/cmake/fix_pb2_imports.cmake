# protoc's Python output imports the module of another .proto by its top-level
# name ("import media_pb2 as media__pb2"). Inside the farmhand package that must be a
# relative import, or it would find nothing (or a stranger's media_pb2).
# Usage: cmake -DFILES="a_pb2.py;b_pb2.py" -P fix_pb2_imports.cmake
foreach(file IN LISTS FILES)
  file(READ "${file}" text)
  string(REGEX REPLACE "(^|\n)import ([A-Za-z0-9_]+_pb2) as " "\\1from . import \\2 as " text
    "${text}")
  file(WRITE "${file}" "${text}")
endforeach()
