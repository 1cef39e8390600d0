// Self-checks of the emulated device (test tool, emulation build only): each scenario launches a
// deliberately wrong (or a known-answer) kernel or cuBLASLt call and returns what the emulator
// reported, so test/unit/cuda_emu_checks.test.ts can prove the checks fire.
#ifdef MESHTRAIN_CUDA_EMU
#include <napi.h>
#include <cmath>
#include <string>
#include <vector>
#include "cuda/common.cuh"
#include "cuda/device_memory.h"
#include "cuda/libraries.h"
#include "cuda/cp_async.cuh"
#include "cuda/mma_sync.cuh"
#include "cuda/runtime.h"
#include "tensor/dtype.h"
#include "util/check.h"

namespace mt {
namespace {

__global__ void writeAt(float* p, int64_t i) {
  if (threadIdx.x == 0 && blockIdx.x == 0) p[i] = 1.0f;
}
__global__ void readPastEnd(const float* f, int64_t nf, const double* d, int64_t nd, double* out) {
  if (threadIdx.x == 0) out[0] = f[nf], out[1] = f[nf + 1], out[2] = d[nd];
}
__global__ void divergentBarrier(float* p) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  p[threadIdx.x] = 0;
}
__global__ void shuffleWithExitedLane(float* p) {
  if (threadIdx.x == 5) return;
  p[threadIdx.x] = __shfl_xor_sync(0xffffffffu, float(threadIdx.x), 1);
}
// Known answers: a warp sum by xor and by down shuffles, a ballot, a block reduction.
__global__ void warpMath(float* out, unsigned* ballot) {
  float v = float(threadIdx.x + 1);
  float x = v, d = v;
  for (int o = 16; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
  for (int o = 16; o > 0; o /= 2) d += __shfl_down_sync(0xffffffffu, d, o);
  unsigned b = __ballot_sync(0xffffffffu, threadIdx.x % 3 == 0);
  __shared__ float buf[cu::kThreads];
  float total = cu::blockReduce<false>(v, buf);
  out[threadIdx.x] = x;
  if (threadIdx.x % 32 == 0) out[blockDim.x + threadIdx.x / 32] = d;
  if (threadIdx.x == 0) out[blockDim.x + blockDim.x / 32] = total;
  if (threadIdx.x % 32 == 0) ballot[threadIdx.x / 32] = b;
}
// Two half-warps reduce independently; lanes 1-15 first meet at a __syncwarp of their own, so
// lane 0 waits in its group's shuffle while another collective of the warp completes.
__global__ void halfWarps(float* out) {
  const unsigned lane = threadIdx.x, mask = lane < 16 ? 0x0000ffffu : 0xffff0000u;
  if (lane >= 1 && lane < 16) __syncwarp(0x0000fffeu);
  float x = float(lane + 1);
  for (int o = 8; o > 0; o /= 2) x += __shfl_xor_sync(mask, x, o, 16);
  out[lane] = x;
}
// Reverses each block's slice through dynamic shared memory.
__global__ void reverseShared(const float* in, float* out) {
  MT_DYNAMIC_SHARED(float, s);
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
  s[threadIdx.x] = in[i];
  __syncthreads();
  out[i] = s[blockDim.x - 1 - threadIdx.x];
}
__global__ void bf16Round(const float* in, uint16_t* out, int64_t n) {
  MT_CU_LOOP(i, n) out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(in[i]));
}

// d = c + 2 a·b on one warp through two mma16816 calls, the fragments built from row-major a
// [16x16], b [16x8] (k x n) and c [16x8] by the layouts mma_sync.cuh documents, d stored back the same way.
template <typename T>
__global__ void mmaProduct(const float* a, const float* b, const float* c, float* d) {
  const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
  auto at = [&](int r, int k) { return mma::pack2<T>(a[r * 16 + k], a[r * 16 + k + 1]); };
  auto bt = [&](int k, int n) { return mma::pack2<T>(b[k * 8 + n], b[(k + 1) * 8 + n]); };
  const mma::A16 fa{{at(g, 2 * t), at(g + 8, 2 * t), at(g, 2 * t + 8), at(g + 8, 2 * t + 8)}};
  const mma::B16 fb{{bt(2 * t, g), bt(2 * t + 8, g)}};
  const int o[4] = {g * 8 + 2 * t, g * 8 + 2 * t + 1, (g + 8) * 8 + 2 * t, (g + 8) * 8 + 2 * t + 1};
  mma::C16 acc{{c[o[0]], c[o[1]], c[o[2]], c[o[3]]}};
  mma::mma16816<T>(acc, fa, fb);
  mma::mma16816<T>(acc, fa, fb);
  for (int i = 0; i < 4; i++) d[o[i]] = acc.c[i];
}

// ldsm4 / ldsm4t (mma_sync.cuh) against fragments read element by element from the same 16x16
// tile: out[lane] counts the registers that differ (A of the tile, and B of its two n8 halves).
__global__ void ldsmFragments(unsigned* out) {
  constexpr int ld = 24;  // a 48-byte row: 16-byte aligned rows, as ldmatrix needs
  __shared__ __align__(16) uint16_t tile[16 * ld];
  const int lane = threadIdx.x, g = lane >> 2, t = lane & 3;
  for (int i = lane; i < 16 * ld; i += 32) tile[i] = uint16_t(0x3c00 + i * 7);
  __syncwarp();
  auto pair = [&](int r0, int c0, int r1, int c1) { return uint32_t(tile[r0 * ld + c0]) | uint32_t(tile[r1 * ld + c1]) << 16; };
  const int i = lane / 8, r = lane % 8;
  uint32_t a[4], b[4];
  mma::ldsm4(a, tile + ((i & 1) * 8 + r) * ld + (i >> 1) * 8);   // matrices (rows, cols) 0/0, 8/0, 0/8, 8/8
  mma::ldsm4t(b, tile + ((i & 1) * 8 + r) * ld + (i >> 1) * 8);  // the same, transposed
  const uint32_t wantA[4] = {pair(g, 2 * t, g, 2 * t + 1), pair(g + 8, 2 * t, g + 8, 2 * t + 1),
                             pair(g, 2 * t + 8, g, 2 * t + 9), pair(g + 8, 2 * t + 8, g + 8, 2 * t + 9)};
  const uint32_t wantB[4] = {pair(2 * t, g, 2 * t + 1, g), pair(2 * t + 8, g, 2 * t + 9, g),
                             pair(2 * t, g + 8, 2 * t + 1, g + 8), pair(2 * t + 8, g + 8, 2 * t + 9, g + 8)};
  unsigned bad = 0;
  for (int k = 0; k < 4; k++) bad += (a[k] != wantA[k]) + (b[k] != wantB[k]);
  out[lane] = bad;
}

// cp.async (cp_async.cuh) lands only at the wait that covers its group: out = shared values of
// copy A before any wait, A after wait<1> (its group closed, B's still open), B then, B after wait<0>.
__global__ void cpAsyncOrder(const float* src, float* out) {
  MT_DYNAMIC_SHARED(float, s);  // fresh: NaN bytes
  if (threadIdx.x != 0) return;
  cpasync::copy16(s, src);
  cpasync::commit();
  out[0] = s[0];
  cpasync::copy16(s + 4, src + 4);
  cpasync::commit();
  cpasync::wait<1>();
  out[1] = s[0];
  out[2] = s[4];
  cpasync::wait<0>();
  out[3] = s[4];
}

// A buffer refilled with no barrier after the other warp read it (write after read): two warp
// collectives separate each warp's read from its write. out[t] is 1 where thread t read before the
// refill, 2 where after: 1 everywhere under the default schedule (the warps move in lockstep from
// one collective to the next), 2 for a whole warp under MESHTRAIN_CUDA_EMU_SCHEDULE=warps.
__global__ void refillRace(float* out) {
  MT_DYNAMIC_SHARED(float, buf);
  const int t = int(threadIdx.x);
  buf[t] = 1.0f;
  __syncthreads();
  float x = buf[(t + 32) % 64];
  x += __shfl_xor_sync(0xffffffffu, 0.0f, 1);
  x += __shfl_xor_sync(0xffffffffu, 0.0f, 2);
  buf[t] = 2.0f;  // the missing __syncthreads() belongs before this
  out[t] = x;
}

// The same refill by cp.async (warp 0 copies `two` over all 64 values): hidden under the default
// schedule (copies land at their wait, the warps in lockstep) and under `warps` (warp 0 refills
// after warp 1 finished); shown under `warps-reverse`, where warp 0 runs ahead and its copies land
// when issued, before warp 1 reads.
__global__ void asyncRefillRace(const float* two, float* out) {
  MT_DYNAMIC_SHARED(float, buf);
  const int t = int(threadIdx.x);
  buf[t] = 1.0f;
  __syncthreads();
  float x = buf[(t + 32) % 64];
  x += __shfl_xor_sync(0xffffffffu, 0.0f, 1);
  x += __shfl_xor_sync(0xffffffffu, 0.0f, 2);
  if (t < 16) cpasync::copy16(buf + 4 * t, two + 4 * t);  // the missing __syncthreads() belongs before this
  cpasync::commit();
  cpasync::wait<0>();
  out[t] = x;
}

std::string errorText(cudaError_t e) {
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

// Launches, then returns the error the next synchronization reports ("" when none).
template <typename F>
std::string afterSync(F&& launch) {
  cudaGetLastError();  // a failed call of an earlier scenario is also the runtime's "last error"
  launch();
  cudaError_t l = cudaGetLastError();
  if (l != cudaSuccess) return errorText(l);
  cudaError_t e = cudaDeviceSynchronize();
  return e == cudaSuccess ? "" : errorText(e);
}

// Host values copied back from a scenario, as a JS array of numbers.
template <typename T>
Napi::Array jsArray(Napi::Env env, const T* h, size_t n) {
  auto a = Napi::Array::New(env);
  for (uint32_t i = 0; i < n; i++) a.Set(i, double(h[i]));
  return a;
}

float* deviceFloats(size_t n) {
  void* p = nullptr;
  cudaCheck(cudaMalloc(&p, n * sizeof(float)), "cudaMalloc");
  return static_cast<float*>(p);
}

Napi::Value Scenario(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string name = info[0].As<Napi::String>();
  cudaSetDevice(0);
  if (name == "oobWrite") {
    float* p = deviceFloats(100);
    std::string r = afterSync([&] { MT_LAUNCH(writeAt, 1, 32, 0, nullptr, p, int64_t(100)); });
    cudaFree(p);
    return Napi::String::New(env, r);
  }
  if (name == "cachedTailWrite" || name == "freedWrite") {
    size_t cap = 0;
    auto* p = static_cast<float*>(cudaAllocBlock(0, 100 * sizeof(float), &cap));  // capacity 512 bytes
    std::string r;
    if (name == "cachedTailWrite") {
      r = afterSync([&] { MT_LAUNCH(writeAt, 1, 32, 0, nullptr, p, int64_t(101)); });
      cudaFreeBlock(0, p, cap);
    } else {
      cudaFreeBlock(0, p, cap);
      r = afterSync([&] { MT_LAUNCH(writeAt, 1, 32, 0, nullptr, p, int64_t(0)); });
    }
    return Napi::String::New(env, r);
  }
  if (name == "hostPointer") {
    std::vector<float> host(64);
    return Napi::String::New(env, afterSync([&] { MT_LAUNCH(writeAt, 1, 32, 0, nullptr, host.data(), int64_t(0)); }));
  }
  if (name == "divergentBarrier" || name == "shuffleWithExitedLane" || name == "badConfig" || name == "sharedTooBig") {
    float* p = deviceFloats(1024);
    std::string r = afterSync([&] {
      if (name == "divergentBarrier") MT_LAUNCH(divergentBarrier, 1, 64, 0, nullptr, p);
      else if (name == "shuffleWithExitedLane") MT_LAUNCH(shuffleWithExitedLane, 1, 32, 0, nullptr, p);
      else if (name == "badConfig") MT_LAUNCH(writeAt, 1, 2048, 0, nullptr, p, int64_t(0));
      else MT_LAUNCH(reverseShared, 1, 32, size_t(64) << 10, nullptr, p, p);
    });
    cudaFree(p);
    return Napi::String::New(env, r);
  }
  if (name == "refillRace" || name == "asyncRefillRace") {  // 64 values: what each thread read (1 before the refill, 2 after)
    float* out = deviceFloats(64);
    float* two = deviceFloats(64);
    const std::vector<float> twos(64, 2.0f);
    cudaCheck(cudaMemcpy(two, twos.data(), 64 * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
    const std::string err = afterSync([&] {
      if (name == "refillRace") MT_LAUNCH(refillRace, 1, 64, 64 * sizeof(float), nullptr, out);
      else MT_LAUNCH(asyncRefillRace, 1, 64, 64 * sizeof(float), nullptr, two, out);
    });
    cudaDeviceSynchronize();  // a failed launch (an unknown schedule) leaves nothing for the next caller
    cudaGetLastError();
    float h[64] = {};
    if (err.empty()) cudaCheck(cudaMemcpy(h, out, sizeof h, cudaMemcpyDeviceToHost), "cudaMemcpy");
    cudaFree(out);
    cudaFree(two);
    if (!err.empty()) return Napi::String::New(env, err);
    return jsArray(env, h, 64);
  }
  if (name == "oobRead") {  // reads past the end see the guard: NaN as f32 and as f64
    float* f = deviceFloats(100);
    double *d = nullptr, *out = nullptr;
    cudaCheck(cudaMalloc(&d, 10 * sizeof(double)), "cudaMalloc");
    cudaCheck(cudaMalloc(&out, 3 * sizeof(double)), "cudaMalloc");
    std::string err = afterSync([&] { MT_LAUNCH(readPastEnd, 1, 32, 0, nullptr, f, int64_t(100), d, int64_t(10), out); });
    MT_CHECK(err.empty(), "oobRead: ", err);
    double h[3];
    cudaCheck(cudaMemcpy(h, out, sizeof h, cudaMemcpyDeviceToHost), "cudaMemcpy");
    cudaFree(f), cudaFree(d), cudaFree(out);
    return jsArray(env, h, 3);
  }
  if (name == "fresh") {  // a new allocation reads as NaN until written
    float* p = deviceFloats(4);
    float h[4];
    cudaCheck(cudaMemcpy(h, p, sizeof h, cudaMemcpyDeviceToHost), "cudaMemcpy");
    cudaFree(p);
    return jsArray(env, h, 4);
  }
  if (name == "halfWarps") {
    float* out = deviceFloats(32);
    std::string err = afterSync([&] { MT_LAUNCH(halfWarps, 1, 32, 0, nullptr, out); });
    MT_CHECK(err.empty(), "halfWarps: ", err);
    float h[32];
    cudaCheck(cudaMemcpy(h, out, sizeof h, cudaMemcpyDeviceToHost), "cudaMemcpy");
    cudaFree(out);
    return jsArray(env, h, 32);
  }
  if (name == "warpMath" || name == "reverseShared") {
    const unsigned threads = 64;
    float* out = deviceFloats(threads * 2);
    unsigned* ballot = nullptr;
    cudaCheck(cudaMalloc(&ballot, 2 * sizeof(unsigned)), "cudaMalloc");
    std::vector<float> in(threads * 2);
    for (size_t i = 0; i < in.size(); i++) in[i] = float(i);
    float* src = deviceFloats(in.size());
    cudaCheck(cudaMemcpy(src, in.data(), in.size() * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
    std::string err = afterSync([&] {
      if (name == "warpMath") MT_LAUNCH(warpMath, 1, threads, 0, nullptr, out, ballot);
      else MT_LAUNCH(reverseShared, 2, threads, threads * sizeof(float), nullptr, src, out);
    });
    MT_CHECK(err.empty(), name, ": ", err);
    const size_t n = name == "warpMath" ? threads + threads / 32 + 1 : threads * 2;
    std::vector<float> h(n);
    unsigned b[2] = {0, 0};
    cudaCheck(cudaMemcpy(h.data(), out, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
    if (name == "warpMath") cudaCheck(cudaMemcpy(b, ballot, sizeof b, cudaMemcpyDeviceToHost), "cudaMemcpy");
    cudaFree(out), cudaFree(ballot), cudaFree(src);
    auto a = jsArray(env, h.data(), n);
    if (name == "warpMath") a.Set(uint32_t(n), double(b[0])), a.Set(uint32_t(n + 1), double(b[1]));
    return a;
  }
  if (name == "cpAsync") {
    float h[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    float* src = deviceFloats(8);
    float* out = deviceFloats(4);
    cudaCheck(cudaMemcpy(src, h, sizeof h, cudaMemcpyHostToDevice), "cudaMemcpy");
    std::string err = afterSync([&] { MT_LAUNCH(cpAsyncOrder, 1, 32, 64, nullptr, src, out); });
    MT_CHECK(err.empty(), "cpAsync: ", err);
    float r[4];
    cudaCheck(cudaMemcpy(r, out, sizeof r, cudaMemcpyDeviceToHost), "cudaMemcpy");
    cudaFree(src), cudaFree(out);
    return jsArray(env, r, 4);
  }
  if (name == "ldsm") {  // registers of the 32 lanes that differ from the element-wise fragments
    unsigned* out = nullptr;
    cudaCheck(cudaMalloc(&out, 32 * sizeof(unsigned)), "cudaMalloc");
    std::string err = afterSync([&] { MT_LAUNCH(ldsmFragments, 1, 32, 0, nullptr, out); });
    MT_CHECK(err.empty(), "ldsm: ", err);
    unsigned h[32];
    cudaCheck(cudaMemcpy(h, out, sizeof h, cudaMemcpyDeviceToHost), "cudaMemcpy");
    cudaFree(out);
    unsigned bad = 0;
    for (unsigned x : h) bad += x;
    return Napi::Number::New(env, double(bad));
  }
  if (name == "mma16816") {
    // Per dtype and input set: the largest |d - reference| over 128 outputs, the reference in
    // double from the inputs rounded as pack2 rounds them. "exact": small multiples of 1/4, whose
    // sums float holds exactly; "rounded": values off the 16-bit grids.
    auto o = Napi::Object::New(env);
    float *a = deviceFloats(256), *b = deviceFloats(128), *c = deviceFloats(128), *d = deviceFloats(128);
    for (const char* set : {"exact", "rounded"}) {
      const bool exact = std::string(set) == "exact";
      std::vector<float> ha(256), hb(128), hc(128);
      for (int i = 0; i < 256; i++)
        ha[i] = exact ? float((i * 5 + i / 16 * 3) % 11 - 5) * 0.5f : std::sin(0.37f * float(i) + 0.1f) * 1.7f;
      for (int i = 0; i < 128; i++) {
        hb[i] = exact ? float((i * 7 + i / 8 * 2) % 13 - 6) * 0.25f : std::cos(0.53f * float(i)) * 1.3f;
        hc[i] = exact ? float(i % 5 - 2) : std::sin(0.11f * float(i)) * 3.0f;
      }
      cudaCheck(cudaMemcpy(a, ha.data(), 256 * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
      cudaCheck(cudaMemcpy(b, hb.data(), 128 * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
      cudaCheck(cudaMemcpy(c, hc.data(), 128 * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
      for (const bool bf : {true, false}) {
        auto round = [&](float x) {
          return bf ? emu::bitsToFloat(uint32_t(emu::floatToBf16Bits(x)) << 16) : emu::f16BitsToFloat(emu::floatToF16Bits(x));
        };
        std::string err = afterSync([&] {
          if (bf) MT_LAUNCH(mmaProduct<cu::bf16>, 1, 32, 0, nullptr, a, b, c, d);
          else MT_LAUNCH(mmaProduct<cu::f16>, 1, 32, 0, nullptr, a, b, c, d);
        });
        MT_CHECK(err.empty(), "mma16816: ", err);
        std::vector<float> hd(128);
        cudaCheck(cudaMemcpy(hd.data(), d, 128 * 4, cudaMemcpyDeviceToHost), "cudaMemcpy");
        double worst = 0;
        for (int m = 0; m < 16; m++)
          for (int n = 0; n < 8; n++) {
            double s = 0;
            for (int k = 0; k < 16; k++) s += double(round(ha[m * 16 + k])) * double(round(hb[k * 8 + n]));
            worst = std::fmax(worst, std::fabs(double(hd[m * 8 + n]) - (double(hc[m * 8 + n]) + 2 * s)));
          }
        o.Set(std::string(set) + (bf ? "Bf16" : "F16"), worst);
      }
    }
    cudaFree(a), cudaFree(b), cudaFree(c), cudaFree(d);
    return o;
  }
  if (name == "bf16Rounding") {
    // Every pattern whose low 16 bits sit at a rounding boundary, plus a stride over the rest:
    // the emulated __float2bfloat16_rn must equal the CPU's conversion (NaNs aside: the device
    // gives the canonical 0x7fff, the CPU keeps the payload).
    std::vector<float> in;
    for (uint32_t hi = 0; hi < 65536; hi++)
      for (uint32_t lo : {0x0000u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu}) in.push_back(emu::bitsToFloat(hi << 16 | lo));
    for (uint64_t u = 12345; u < (uint64_t(1) << 32); u += 65521) in.push_back(emu::bitsToFloat(uint32_t(u)));
    const int64_t n = int64_t(in.size());
    float* src = deviceFloats(in.size());
    uint16_t* out = nullptr;
    cudaCheck(cudaMalloc(&out, in.size() * 2), "cudaMalloc");
    cudaCheck(cudaMemcpy(src, in.data(), in.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
    std::string err = afterSync([&] { MT_LAUNCH(bf16Round, cu::blocksFor(n), cu::kThreads, 0, nullptr, src, out, n); });
    MT_CHECK(err.empty(), "bf16Rounding: ", err);
    std::vector<uint16_t> h(in.size());
    cudaCheck(cudaMemcpy(h.data(), out, in.size() * 2, cudaMemcpyDeviceToHost), "cudaMemcpy");
    cudaFree(src), cudaFree(out);
    int64_t mismatches = 0;
    for (size_t i = 0; i < in.size(); i++)
      if (!std::isnan(in[i]) && h[i] != floatToBf16(in[i])) mismatches++;
    auto o = Napi::Object::New(env);
    o.Set("checked", double(n));
    o.Set("mismatches", double(mismatches));
    return o;
  }
  throw Error(cat("cudaEmuChecks.run: unknown scenario '", name, "'"));
}

// cuBLASLt through meshtrain's loader (so the emulated library in emu-lib): a known product and
// the rejections the real library makes.
Napi::Value Cublas(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string why;
  const CublasLtApi* lt = cublasLt(&why);
  MT_CHECK(lt, "cudaEmuChecks.cublas: ", why);
  auto o = Napi::Object::New(env);
  lt::Handle h = nullptr;
  lt->create(&h);
  // D (2x2, col-major) = op(A) op(B) with A stored as 3x2 (transposed to 2x3) and B 3x2.
  const float A[6] = {1, 2, 3, 4, 5, 6}, B[6] = {1, 0, 2, 1, 1, 1};
  float *a = deviceFloats(6), *b = deviceFloats(6), *d = deviceFloats(4);
  cudaMemcpy(a, A, sizeof A, cudaMemcpyHostToDevice);
  cudaMemcpy(b, B, sizeof B, cudaMemcpyHostToDevice);
  lt::MatmulDesc op = nullptr;
  lt::Layout la = nullptr, lb = nullptr, ld = nullptr, bad = nullptr;
  lt::Preference pref = nullptr;
  lt->matmulDescCreate(&op, lt::kCompute32F, lt::kR32F);
  const int t = lt::kOpT;
  lt->matmulDescSetAttribute(op, lt::kDescTransA, &t, sizeof t);
  lt->layoutCreate(&la, lt::kR32F, 3, 2, 3);
  lt->layoutCreate(&lb, lt::kR32F, 3, 2, 3);
  lt->layoutCreate(&ld, lt::kR32F, 2, 2, 2);
  lt->layoutCreate(&bad, lt::kR32F, 2, 2, 1);  // ld 1 < 2 rows
  lt->preferenceCreate(&pref);
  lt::HeuristicResult r{};
  int found = 0;
  o.Set("heuristic", lt->algoGetHeuristic(h, op, la, lb, ld, ld, pref, 1, &r, &found));
  const float alpha = 1, beta = 0;
  o.Set("matmul", lt->matmul(h, op, &alpha, a, la, b, lb, &beta, d, ld, d, ld, &r.algo, nullptr, 0, nullptr));
  float D[4];
  cudaMemcpy(D, d, sizeof D, cudaMemcpyDeviceToHost);
  o.Set("values", jsArray(env, D, 4));
  lt::HeuristicResult r2{};
  o.Set("smallLd", lt->algoGetHeuristic(h, op, la, lb, bad, bad, pref, 1, &r2, &found));
  const int64_t wrongSize = 2;
  o.Set("wrongAttributeSize", lt->layoutSetAttribute(la, lt::kLayoutBatchCount, &wrongSize, sizeof wrongSize));
  lt::Layout other = nullptr;
  lt->layoutCreate(&other, lt::kR32F, 2, 2, 4);  // same shape, another leading dimension
  o.Set("algoReused", lt->matmul(h, op, &alpha, a, la, b, lb, &beta, d, other, d, other, &r.algo, nullptr, 0, nullptr));
  o.Set("misaligned", lt->matmul(h, op, &alpha, a + 1, la, b, lb, &beta, d, ld, d, ld, &r.algo, nullptr, 0, nullptr));
  for (auto l : {la, lb, ld, bad, other}) lt->layoutDestroy(l);
  lt->matmulDescDestroy(op);
  lt->preferenceDestroy(pref);
  cudaFree(a), cudaFree(b), cudaFree(d);
  return o;
}

}  // namespace

void registerCudaEmuChecks(Napi::Env env, Napi::Object exports) {
  auto o = Napi::Object::New(env);
  MT_EXPORT(o, "run", Scenario);
  MT_EXPORT(o, "cublas", Cublas);
  exports.Set("cudaEmuChecks", o);
}

}  // namespace mt
#endif
