// Counter-based RNG (Philox4x32-10). Element g of a random tensor depends only on (seed,
// offset + g), so a shard that generates elements [start, start + n) gets exactly the values
// the full tensor would hold there, whatever the layout.
#include <cmath>
#include <type_traits>
#include "tensor/philox.h"
#include "tensor/storage.h"
#include "util/args.h"
#include "util/parallel.h"

namespace mt {
namespace {

struct Philox {
  uint32_t k0, k1;
  explicit Philox(uint64_t seed) : k0(uint32_t(seed)), k1(uint32_t(seed >> 32)) {}

  // Four 32-bit words for the 128-bit counter (index, 0).
  void operator()(uint64_t index, uint32_t out[4]) const { philox4x32(k0, k1, index, out); }
};

// (0, 1]: never 0, so log() in Box-Muller is finite.
inline double unit(uint32_t hi, uint32_t lo) {
  uint64_t bits = (uint64_t(hi) << 21) ^ uint64_t(lo >> 11);
  return (double(bits & ((uint64_t(1) << 53) - 1)) + 1.0) / 9007199254740992.0;
}

enum Dist { kUniform = 0, kNormal = 1, kDropoutMask = 2 };

template <typename T>
void randomKernel(int kind, T* p, int64_t n, const Philox& gen, uint64_t first, double a, double b) {
  parallelFor(n, 16, [&](int64_t i) {
    uint32_t w[4];
    gen(first + uint64_t(i), w);
    double u = unit(w[0], w[1]);
    // One explicit fused multiply-add: the same value whether or not the compiler would contract
    // (it does at -O2 with FMA hardware, not at -O1), and the device's __fma_rn (random.cu).
    double v = kind == kUniform ? std::fma(b - a, 1.0 - u, a) : (u <= a) ? 0.0 : 1.0 / (1.0 - a);
    store(p + i, v);
  });
}

// Normal samples: counter c gives the Box-Muller pair (r cos t, r sin t) for elements 2c and
// 2c + 1, so one draw and one log serve two elements and element g still depends only on g.
// 16-bit and f32 tensors compute in float (about 3x faster), f64 in double.
template <typename T>
void normalKernel(T* p, int64_t n, const Philox& gen, uint64_t first, double mean, double std) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  const uint64_t c0 = first >> 1, c1 = (first + uint64_t(n) + 1) >> 1;
  parallelFor(int64_t(c1 - c0), 24, [&](int64_t k) {
    const uint64_t c = c0 + uint64_t(k);
    uint32_t w[4];
    gen(c, w);
    const C r = std::sqrt(C(-2) * std::log(C(unit(w[0], w[1]))));
    const C t = C(6.283185307179586) * C(unit(w[2], w[3]));
    const C z[2] = {r * std::cos(t), r * std::sin(t)};
    for (int lane = 0; lane < 2; lane++) {
      const uint64_t g = 2 * c + uint64_t(lane);
      if (g >= first && g < first + uint64_t(n)) store(p + (g - first), std::fma(C(std), z[lane], C(mean)));
    }
  });
}

// random(kind, dtype, id, off, n, seed, offset, start, a, b)
//   uniform: [a, b); normal: mean a, std b; dropout mask: 0 with probability a, else 1/(1-a).
Napi::Value Random(const Napi::CallbackInfo& info) {
  int kind = int(argInt(info, 0));
  DType d = toDType(int(argInt(info, 1)));
  int64_t id = argInt(info, 2), off = argInt(info, 3), n = argInt(info, 4);
  uint64_t seed = uint64_t(argInt(info, 5));
  uint64_t offset = uint64_t(argInt(info, 6)), start = uint64_t(argInt(info, 7));
  double a = argNum(info, 8), b = argNum(info, 9);
  MT_CHECK(kind >= 0 && kind <= 2, "random: unknown distribution ", kind);
  Philox gen(seed);
  if (kind == kNormal) {
    MT_DISPATCH_FLOAT(d, "random", normalKernel<T>(dataPtr<T>(id, off, n), n, gen, offset + start, a, b));
  } else {
    MT_DISPATCH_FLOAT(d, "random", randomKernel<T>(kind, dataPtr<T>(id, off, n), n, gen, offset + start, a, b));
  }
  return info.Env().Undefined();
}

}  // namespace

void registerRandom(Napi::Env env, Napi::Object exports) { MT_EXPORT(exports, "random", Random); }

}  // namespace mt
