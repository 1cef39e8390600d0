// Strided copy with dtype conversion (contiguous(), casts, permute materialization) and fill.
// Reference: native/tensor/copy.cc.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace mt {
namespace {

template <typename S, typename D>
__global__ void copyKernel(const S* src, D* dst, cu::Dims2 d, int64_t n) {
  MT_CU_LOOP(i, n) {
    int64_t so, dof;
    cu::offsets2(d, i, &so, &dof);
    cu::st(dst + dof, cu::ld(src + so));
  }
}

template <typename S, typename D>
__global__ void copyFlatKernel(const S* src, D* dst, int64_t n) {
  MT_CU_LOOP(i, n) cu::st(dst + i, cu::ld(src + i));
}

template <typename T>
__global__ void fillKernel(T* p, int64_t n, T v) {
  MT_CU_LOOP(i, n) p[i] = v;
}

template <typename T>
T hostValue(double v) {
  if constexpr (std::is_same_v<T, cu::bf16>) return __float2bfloat16_rn(float(v));
  else if constexpr (std::is_same_v<T, cu::f16>) return __float2half_rn(float(v));
  else return T(v);
}

const char* dtypeName(int d) {
  static const char* names[] = {"f32", "f64", "bf16", "f16", "i32", "i64"};
  return d >= 0 && d < 6 ? names[d] : "?";
}

int itemBytes(int d) { return d == cu::F64 || d == cu::I64 ? 8 : d == cu::F32 || d == cu::I32 ? 4 : 2; }

// The census's label of a copy: "bf16->f32" for a cast, plus " strided" when not flat.
std::string copyLabel(int src, int dst, bool flat) {
  std::string l = src == dst ? std::string(dtypeName(src)) : std::string(dtypeName(src)) + "->" + dtypeName(dst);
  return flat ? l : l + " strided";
}

}  // namespace

void cudaCopyStrided(int dev, int srcDtype, const void* src, const int64_t* ss, int dstDtype, void* dst,
                     const int64_t* ds, const int64_t* shape, int nd) {
  if (nd > cu::kMaxDims) cu::fail("copy: more than 8 dims after merging; make the tensor contiguous on the CPU first");
  cu::Dims2 d{};
  d.nd = nd;
  int64_t n = 1;
  bool flat = true;
  int64_t expect = 1;
  for (int k = nd - 1; k >= 0; k--) {
    d.shape[k] = shape[k];
    d.s0[k] = ss[k];
    d.s1[k] = ds[k];
    n *= shape[k];
    if (shape[k] != 1 && (ss[k] != expect || ds[k] != expect)) flat = false;
    expect *= shape[k];
  }
  if (n == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CU_ALL(srcDtype, "copy", {
    using S = T;
    MT_CU_ALL(dstDtype, "copy", {
      auto copyFlat = copyFlatKernel<S, T>;
      auto copyStrided = copyKernel<S, T>;
      MT_CENSUS_DESCRIBE(copyLabel(srcDtype, dstDtype, flat), double(n) * (sizeof(S) + sizeof(T)));
      if (flat) MT_LAUNCH(copyFlat, cu::blocksFor(n), cu::kThreads, 0, s, static_cast<const S*>(src), static_cast<T*>(dst), n);
      else MT_LAUNCH(copyStrided, cu::blocksFor(n), cu::kThreads, 0, s, static_cast<const S*>(src), static_cast<T*>(dst), d, n);
    });
  });
  cu::checkLaunch("copy");
}

void cudaFill(int dev, int dtype, void* p, int64_t n, double value) {
  if (n == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  MT_CENSUS_DESCRIBE(std::string(dtypeName(dtype)) + (value == 0 ? " zeros" : ""), double(n) * itemBytes(dtype));
  MT_CU_ALL(dtype, "fill", MT_LAUNCH(fillKernel<T>, cu::blocksFor(n), cu::kThreads, 0, s, static_cast<T*>(p), n, hostValue<T>(value)));
  cu::checkLaunch("fill");
}

}  // namespace mt
