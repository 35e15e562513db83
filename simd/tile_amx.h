/* tile_amx.h — the tile primitives of gemm_tile_body.h on real AMX (AMX-TILE, AMX-BF16). Include
 * only from files compiled with the AMX flags (`*_amx.c`). tile_emu.h implements the same names
 * in plain C. Tile numbers must be compile-time constants (they are encoded in the instruction). */
#ifndef QV_SIMD_TILE_AMX_H
#define QV_SIMD_TILE_AMX_H

#include <immintrin.h>

#include "gemm_impl.h"

#define QV_TILE_CONFIG(cfg) _tile_loadconfig(cfg)
#define QV_TILE_RELEASE() _tile_release()
#define QV_TILE_ZERO(t) _tile_zero(t)
#define QV_TILE_LOAD(t, base, stride) _tile_loadd(t, base, stride)
#define QV_TILE_STORE(t, base, stride) _tile_stored(t, base, stride)
#define QV_TILE_DPBF16(c, a, b) _tile_dpbf16ps(c, a, b)

#endif /* QV_SIMD_TILE_AMX_H */
