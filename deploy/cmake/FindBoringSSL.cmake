# FindBoringSSL: BoringSSL as Debian ships it in android-libboringssl-dev.
#
# Debian installs BoringSSL beside (not instead of) OpenSSL: headers under
# /usr/include/android and libraries under /usr/lib/x86_64-linux-gnu/android,
# a directory the dynamic loader does not search. The imported targets
# therefore carry an rpath to that directory so binaries find libssl.so.0 and
# libcrypto.so.0 at run time without LD_LIBRARY_PATH.
#
# Result: BoringSSL::ssl, BoringSSL::crypto, BoringSSL_FOUND.
find_path(BORINGSSL_INCLUDE_DIR openssl/base.h
  PATHS /usr/include/android NO_DEFAULT_PATH)
find_library(BORINGSSL_SSL_LIBRARY NAMES ssl
  PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/android /usr/lib/x86_64-linux-gnu/android
  NO_DEFAULT_PATH)
find_library(BORINGSSL_CRYPTO_LIBRARY NAMES crypto
  PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/android /usr/lib/x86_64-linux-gnu/android
  NO_DEFAULT_PATH)

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(BoringSSL
  REQUIRED_VARS BORINGSSL_INCLUDE_DIR BORINGSSL_SSL_LIBRARY BORINGSSL_CRYPTO_LIBRARY
  FAIL_MESSAGE "BoringSSL not found in /usr/include/android and /usr/lib/<arch>/android: apt-get install android-libboringssl-dev")

if(BoringSSL_FOUND AND NOT TARGET BoringSSL::crypto)
  get_filename_component(BORINGSSL_LIBRARY_DIR "${BORINGSSL_CRYPTO_LIBRARY}" DIRECTORY)
  add_library(BoringSSL::crypto SHARED IMPORTED)
  set_target_properties(BoringSSL::crypto PROPERTIES
    IMPORTED_LOCATION "${BORINGSSL_CRYPTO_LIBRARY}"
    IMPORTED_NO_SONAME FALSE
    INTERFACE_INCLUDE_DIRECTORIES "${BORINGSSL_INCLUDE_DIR}"
    INTERFACE_LINK_OPTIONS "LINKER:-rpath,${BORINGSSL_LIBRARY_DIR}")
  add_library(BoringSSL::ssl SHARED IMPORTED)
  set_target_properties(BoringSSL::ssl PROPERTIES
    IMPORTED_LOCATION "${BORINGSSL_SSL_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${BORINGSSL_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES BoringSSL::crypto
    INTERFACE_LINK_OPTIONS "LINKER:-rpath,${BORINGSSL_LIBRARY_DIR}")
  mark_as_advanced(BORINGSSL_INCLUDE_DIR BORINGSSL_SSL_LIBRARY BORINGSSL_CRYPTO_LIBRARY)
endif()
