/* ABI version of the native module; bumped when a kernel's signature changes. */
#include "version.h"

int semjpeg_native_abi_version(void) { return 1; }
