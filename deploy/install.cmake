# Runs inside `cmake --install` (see deploy/CMakeLists.txt, which sets the
# FARMHAND_* variables first). file(INSTALL) prepends $ENV{DESTDIR} to the
# absolute destinations below and records each file in install_manifest.txt.
set(prefix "${CMAKE_INSTALL_PREFIX}")
string(REGEX REPLACE "/+$" "" prefix "${prefix}")
set(deploy "${FARMHAND_SOURCE_DIR}/deploy")

# Where things go for this prefix (a cache variable set at configure time wins).
if(FARMHAND_SYSTEMD_UNIT_DIR)
  set(unit_dir "${FARMHAND_SYSTEMD_UNIT_DIR}")
elseif(prefix STREQUAL "/usr")
  set(unit_dir "/lib/systemd/system")
else()
  set(unit_dir "${prefix}/lib/systemd/system")
endif()
if(FARMHAND_SYSUSERS_DIR)
  set(sysusers_dir "${FARMHAND_SYSUSERS_DIR}")
else()
  set(sysusers_dir "${prefix}/lib/sysusers.d")
endif()
if(FARMHAND_PYTHON_DIR)
  set(python_dir "${FARMHAND_PYTHON_DIR}")
elseif(prefix STREQUAL "/usr")
  set(python_dir "/usr/lib/python3/dist-packages")
else()
  set(python_dir "${prefix}/lib/python${FARMHAND_PYTHON_VERSION}/dist-packages")
endif()

# systemd units, filled in with this prefix's paths.
set(BINDIR "${prefix}/${FARMHAND_BINDIR_REL}")
set(DOCDIR "${prefix}/${FARMHAND_DOCDIR_REL}")
set(CONFDIR "${FARMHAND_CONFIG_DIR}")
foreach(unit farmhandd.service farmhand-worker@.service)
  configure_file("${deploy}/${unit}.in" "${FARMHAND_STAGING_DIR}/${unit}" @ONLY)
endforeach()
file(INSTALL DESTINATION "${unit_dir}" TYPE FILE PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ
  WORLD_READ FILES "${FARMHAND_STAGING_DIR}/farmhandd.service"
  "${FARMHAND_STAGING_DIR}/farmhand-worker@.service")
file(INSTALL DESTINATION "${sysusers_dir}" TYPE FILE RENAME farmhand.conf
  FILES "${deploy}/farmhand.sysusers.conf")

# The example config: always as farmhand.yaml.example; as farmhand.yaml only if
# there is none, so an upgrade never overwrites a site's config.
file(INSTALL DESTINATION "${CONFDIR}" TYPE FILE RENAME farmhand.yaml.example
  FILES "${FARMHAND_SOURCE_DIR}/config/farmhand.yaml")
if(EXISTS "$ENV{DESTDIR}${CONFDIR}/farmhand.yaml")
  message(STATUS "Keeping: $ENV{DESTDIR}${CONFDIR}/farmhand.yaml (new example beside it)")
else()
  file(INSTALL DESTINATION "${CONFDIR}" TYPE FILE
    FILES "${FARMHAND_SOURCE_DIR}/config/farmhand.yaml")
endif()

# The Python client: python/farmhand/**.py plus the *_pb2.py the build generated.
if(IS_DIRECTORY "${FARMHAND_SOURCE_DIR}/python/farmhand")
  file(INSTALL DESTINATION "${python_dir}" TYPE DIRECTORY
    FILES "${FARMHAND_SOURCE_DIR}/python/farmhand"
    FILES_MATCHING PATTERN "*.py" PATTERN "__pycache__" EXCLUDE)
  file(GLOB generated "${FARMHAND_PYTHON_GENERATED_DIR}/*_pb2.py")
  if(generated)
    file(INSTALL DESTINATION "${python_dir}/farmhand" TYPE FILE FILES ${generated})
  else()
    message(WARNING "farmhand: no generated *_pb2.py in ${FARMHAND_PYTHON_GENERATED_DIR}; "
                    "the installed Python package will not import until they are built")
  endif()
endif()

message(STATUS "farmhand: create the service user with `systemd-sysusers`, then "
               "`systemctl daemon-reload && systemctl enable --now farmhandd` (deploy/README.md)")
