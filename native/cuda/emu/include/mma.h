// The warp matrix (WMMA) subset meshtrain's tensor-core kernels use, for the emulated device
// (test tool). Every lane of a warp holds the whole 16x16 tile, row-major by logical (row, col):
// kernels touch fragments only through these calls (and uniform per-element scaling), so the
// results equal a real warp's up to the order of the float additions inside mma_sync. Loads end
// with a warp barrier, as the real collective does: no lane stores over a tile before every lane
// has read it (fibers otherwise run one after another).
#pragma once
#include "cuda_bf16.h"
#include "cuda_fp16.h"

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static_assert(M == 16 && N == 16 && K == 16, "emulated WMMA: 16x16x16 only");
  static constexpr int num_elements = 256;
  T x[256];
};

inline float toFloat(float v) { return v; }
inline float toFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
inline float toFloat(__half v) { return __half2float(v); }

template <typename Use, typename T, typename L>
void fill_fragment(fragment<Use, 16, 16, 16, T, L>& f, const T& v) {
  for (int i = 0; i < 256; i++) f.x[i] = v;
}

// matrix_a / matrix_b: element (r, c) of the logical tile at p[r * ldm + c] (row_major) or
// p[c * ldm + r] (col_major).
template <typename Use, typename T>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, row_major>& f, const T* p, unsigned ldm) {
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) f.x[r * 16 + c] = p[r * ldm + c];
  __syncwarp();
}
template <typename Use, typename T>
void load_matrix_sync(fragment<Use, 16, 16, 16, T, col_major>& f, const T* p, unsigned ldm) {
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) f.x[r * 16 + c] = p[c * ldm + r];
  __syncwarp();
}
inline void load_matrix_sync(fragment<accumulator, 16, 16, 16, float>& f, const float* p, unsigned ldm, layout_t l) {
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) f.x[r * 16 + c] = l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r];
  __syncwarp();
}
inline void store_matrix_sync(float* p, const fragment<accumulator, 16, 16, 16, float>& f, unsigned ldm, layout_t l) {
  for (int r = 0; r < 16; r++)
    for (int c = 0; c < 16; c++) (l == mem_row_major ? p[r * ldm + c] : p[c * ldm + r]) = f.x[r * 16 + c];
}

// d = a b + c in float.
template <typename T, typename LA, typename LB>
void mma_sync(fragment<accumulator, 16, 16, 16, float>& d, const fragment<matrix_a, 16, 16, 16, T, LA>& a,
              const fragment<matrix_b, 16, 16, 16, T, LB>& b, const fragment<accumulator, 16, 16, 16, float>& c) {
  float out[256];
  for (int m = 0; m < 16; m++)
    for (int n = 0; n < 16; n++) {
      float s = c.x[m * 16 + n];
      for (int k = 0; k < 16; k++) s += toFloat(a.x[m * 16 + k]) * toFloat(b.x[k * 16 + n]);
      out[m * 16 + n] = s;
    }
  for (int i = 0; i < 256; i++) d.x[i] = out[i];
}

}  // namespace wmma
}  // namespace nvcuda
