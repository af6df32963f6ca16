#ifndef HOURGLASS_CLZ4_SHIM_H
#define HOURGLASS_CLZ4_SHIM_H
// The system's liblz4 (Debian: liblz4-dev). Hourglass uses the block API only.
#include <lz4.h>
#endif
