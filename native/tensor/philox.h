// Philox4x32-10, the counter-based generator behind random tensors, shared by the CPU
// (tensor/random.cc) and the device (cuda/random.cu) so that both draw the same words.
#pragma once
#include <cstdint>

#include "util/host_device.h"

namespace mt {

// Four 32-bit words for the 128-bit counter (index, 0) under the key (k0, k1).
MT_HOST_DEVICE void philox4x32(uint32_t k0, uint32_t k1, uint64_t index, uint32_t out[4]) {
  uint32_t c0 = uint32_t(index), c1 = uint32_t(index >> 32), c2 = 0, c3 = 0;
  uint32_t a = k0, b = k1;
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = uint64_t(0xD2511F53u) * c0, p1 = uint64_t(0xCD9E8D57u) * c2;
    uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ a, n2 = uint32_t(p0 >> 32) ^ c3 ^ b;
    c1 = uint32_t(p1);
    c3 = uint32_t(p0);
    c0 = n0;
    c2 = n2;
    a += 0x9E3779B9u;
    b += 0xBB67AE85u;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

}  // namespace mt
