# Read by cpack for every generator: a Debian package lives under /usr, and the
# systemd unit inside it names /usr/bin/mailport, so refuse any other prefix
# instead of shipping a unit that points at nothing.
if(CPACK_GENERATOR STREQUAL "DEB" AND NOT CPACK_PACKAGING_INSTALL_PREFIX STREQUAL "/usr")
  message(FATAL_ERROR "cpack -G DEB: configure with -DCMAKE_INSTALL_PREFIX=/usr "
                      "(this build's prefix is ${CPACK_PACKAGING_INSTALL_PREFIX})")
endif()
