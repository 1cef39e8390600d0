// normPowInto: sum |x|^p (max |x| for p = inf) of one flat range added into an f64 accumulator on
// the device, so a training step can sum every gradient's share, all-reduce that one scalar and
// read it once. The chunk partials are normPow's (norm_pow.cuh); several chunks are combined by
// one block in a fixed order (contiguous runs per thread, then a fixed tree): run to run
// bit-identical, NaN and inf propagating.
#include <cmath>
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/norm_pow.cuh"
#include "cuda/runtime.h"

namespace mt {
namespace {

// One block: thread t combines partials [t*per, (t+1)*per) in order, the block merges the
// threads' values in a fixed tree, thread 0 adds the result into *acc.
__global__ void normCombineKernel(const double* partial, int64_t chunks, double p, double* acc) {
  __shared__ double buf[cu::kThreads];
  const bool isMax = isinf(p);
  const int64_t per = (chunks + cu::kThreads - 1) / cu::kThreads;
  const int64_t lo = int64_t(threadIdx.x) * per;
  const int64_t hi = min(chunks, lo + per);
  double v = 0;
  for (int64_t i = lo; i < hi; i++) v = cu::normCombine(v, partial[i], isMax);
  double r = isMax ? cu::blockReduce<true>(v, buf) : cu::blockReduce<false>(v, buf);
  if (threadIdx.x == 0) *acc = cu::normCombine(*acc, r, isMax);
}

}  // namespace

void cudaNormPowInto(int dev, int dtype, const void* x, int64_t n, double p, double* acc, double* partial) {
  if (n == 0) return;
  cudaUseDevice(dev);
  cudaStream_t s = computeStream(dev);
  const int64_t chunks = cudaNormPowScratch(n);
  if (chunks > (int64_t(1) << 31) - 1) cu::fail("normPowInto: too many elements");
  if (chunks == 1) {  // one block adds its own result: one launch, no scratch
    MT_CU_FLOAT(dtype, "normPowInto",
                MT_LAUNCH(cu::normPowKernel<T>, 1u, cu::kThreads, 0, s, static_cast<const T*>(x), n, p,
                          static_cast<double*>(nullptr), acc));
    cu::checkLaunch("normPowInto");
    return;
  }
  if (!partial) cu::fail("normPowInto: no scratch for the chunk partials");
  MT_CU_FLOAT(dtype, "normPowInto",
              MT_LAUNCH(cu::normPowKernel<T>, unsigned(chunks), cu::kThreads, 0, s, static_cast<const T*>(x), n, p,
                        partial, static_cast<double*>(nullptr)));
  cu::checkLaunch("normPowInto (chunks)");
  MT_LAUNCH(normCombineKernel, 1u, cu::kThreads, 0, s, static_cast<const double*>(partial), chunks, p, acc);
  cu::checkLaunch("normPowInto (combine)");
}

}  // namespace mt
