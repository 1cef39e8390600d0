// A reference cuBLASLt for the emulated device (test tool), built as libcublasLt.so.13 in
// <build>/emu-lib and opened by dlopen like the real one. It implements the documented semantics
// of the calls meshtrain makes (NVIDIA's cuBLASLt reference, cublasLtMatmul and the descriptor
// attributes), not meshtrain's assumptions, and rejects what the real library rejects:
// attribute sizes, leading dimensions, mismatched shapes/batches/types, under-aligned pointers,
// an algorithm reused for another problem. D = alpha * op(A) op(B) + beta * C (+ bias), in the
// compute type (f32 accumulation for 16-bit inputs), C unread when beta is 0. Epilogues: BIAS
// (a vector over D's rows added before rounding) and the bias gradients BGRADA / BGRADB (op(A)'s
// row sums / op(B)'s column sums over k, f32 accumulation, one rounding), their vector in
// CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, which for these types is D's type (the documented default;
// the exceptions are IMMA and fp8 kernels, not emulated). GELU, GELU_BIAS, GELU_AUX and
// GELU_AUX_BIAS: GELU's tanh form applied in the compute type to the value after the bias, the _AUX
// forms writing that value (the GELU input) to CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER in D's
// type (AUX_DATA_TYPE's default) with AUX_LD (a multiple of 8, at least D's rows). DGELU: the
// product (after alpha, beta and C) times GELU's derivative at the AUX matrix's value (the GELU
// input a GELU_AUX forward stored, read from the same pointer, type and AUX_LD), both in the
// compute type, rounded once; DGELU_BGRAD is not emulated. Each rejection is
// printed to stderr with its reason, since the status code alone says little.
// MESHTRAIN_CUDA_EMU_SKIP_WORK=1: every check, then no arithmetic (host-cost measurement only).
// On a capturing stream (the runtime's hook, mtEmuSetCaptureHook) a matmul is recorded with
// everything it needs copied by value (descriptor and layout contents, alpha/beta, pointers) and
// computed at each graph replay.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>
#include <string>
#include "cuda/emu/half.h"

namespace {

enum Status { kSuccess = 0, kNotInitialized = 1, kInvalidValue = 7, kNotSupported = 15 };
enum DataType { kR32F = 0, kR64F = 1, kR16F = 2, kR16BF = 14 };
enum Compute { k32F = 68, k32FPedantic = 69, k64F = 70, k64FPedantic = 71, k32FFastTF32 = 77 };
enum Order { kCol = 0, kRow = 1 };
enum Op { kOpN = 0, kOpT = 1, kOpC = 2 };
enum Epilogue {
  kEpilogueDefault = 1, kEpilogueBias = 4, kEpilogueBgradA = 256, kEpilogueBgradB = 512,
  kEpilogueGelu = 32, kEpilogueGeluBias = 36, kEpilogueGeluAux = 160, kEpilogueGeluAuxBias = 164,
  kEpilogueDGelu = 192,
};
bool isGelu(uint32_t e) { return e == kEpilogueGelu || e == kEpilogueGeluBias || e == kEpilogueGeluAux || e == kEpilogueGeluAuxBias; }
// The AUX matrix is written (the GELU input, forward) or read (DGELU, backward).
bool hasAux(uint32_t e) { return e == kEpilogueGeluAux || e == kEpilogueGeluAuxBias || e == kEpilogueDGelu; }
bool addsBias(uint32_t e) { return e == kEpilogueBias || e == kEpilogueGeluBias || e == kEpilogueGeluAuxBias; }
constexpr uint64_t kAlgoMagic = 0x6d74656d75616c67ull;  // "mtemualg"

struct Handle {
  int unused = 0;
};
struct MatmulDesc {
  int32_t compute, scale, pointerMode = 0, transA = kOpN, transB = kOpN, transC = kOpN;
  uint32_t epilogue = kEpilogueDefault;
  const void* bias = nullptr;
  int64_t biasBatchStride = 0;
  int32_t biasType = -1;  // -1: D's type
  void* aux = nullptr;    // the GELU input matrix (_AUX epilogues)
  int64_t auxLd = 0, auxBatchStride = 0;
  int32_t auxType = -1;   // -1: D's type
};
struct Layout {
  uint32_t type;
  int32_t order = kCol;
  uint64_t rows, cols;
  int64_t ld;
  int32_t batch = 1;
  int64_t batchStride = 0;
  int64_t planeOffset = 0;
};
struct Preference {
  uint32_t searchMode = 0;
  uint64_t maxWorkspace = 0;
  uint32_t reductionMask = 7;
  uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D; the documented defaults
  uint64_t implMask = ~0ull;
};
struct Algo {
  uint64_t data[8];
};
struct HeuristicResult {
  Algo algo;
  size_t workspaceSize;
  int state;
  float wavesCount;
  int reserved[4];
};

bool skipWork() {
  static const bool skip = [] {
    const char* e = std::getenv("MESHTRAIN_CUDA_EMU_SKIP_WORK");
    return e && *e && std::strcmp(e, "0") != 0;
  }();
  return skip;
}

std::mutex mu;
std::set<const void*>& live() {
  static std::set<const void*> s;
  return s;
}
template <typename T>
T* track(T* p) {
  std::lock_guard<std::mutex> lock(mu);
  live().insert(p);
  return p;
}
bool isLive(const void* p) {
  std::lock_guard<std::mutex> lock(mu);
  return p && live().count(p);
}
template <typename T>
int destroy(T* p, const char* what) {
  std::lock_guard<std::mutex> lock(mu);
  if (!p || !live().erase(p)) {
    std::fprintf(stderr, "cublasLt emu: %s of an unknown or destroyed descriptor\n", what);
    return kInvalidValue;
  }
  delete p;
  return kSuccess;
}

int reject(int status, const std::string& why) {
  std::fprintf(stderr, "cublasLt emu: %s\n", why.c_str());
  return status;
}

// Copies an attribute value whose storage is exactly sizeof(T) bytes, as the library checks.
template <typename T>
int setValue(T& field, const void* buf, size_t size, const char* name) {
  if (!buf) return reject(kInvalidValue, std::string(name) + ": null buffer");
  if (size != sizeof(T))
    return reject(kInvalidValue, std::string(name) + ": " + std::to_string(size) + " bytes given, the attribute holds " +
                                     std::to_string(sizeof(T)));
  std::memcpy(&field, buf, sizeof(T));
  return kSuccess;
}

size_t typeSize(uint32_t t) {
  switch (t) {
    case kR32F: return 4;
    case kR64F: return 8;
    case kR16F: case kR16BF: return 2;
    default: return 0;
  }
}
const char* typeName(uint32_t t) {
  switch (t) {
    case kR32F: return "CUDA_R_32F";
    case kR64F: return "CUDA_R_64F";
    case kR16F: return "CUDA_R_16F";
    case kR16BF: return "CUDA_R_16BF";
    default: return "an unsupported type";
  }
}

double load(const void* base, uint32_t type, int64_t i) {
  switch (type) {
    case kR32F: return static_cast<const float*>(base)[i];
    case kR64F: return static_cast<const double*>(base)[i];
    case kR16BF: return float(static_cast<const __nv_bfloat16*>(base)[i]);
    default: return float(static_cast<const __half*>(base)[i]);
  }
}
void store(void* base, uint32_t type, int64_t i, double v, bool fromFloat) {
  switch (type) {
    case kR32F: static_cast<float*>(base)[i] = float(v); break;
    case kR64F: static_cast<double*>(base)[i] = v; break;
    // From an f32 scale type the value is a float already: round it once to 16 bits.
    case kR16BF: static_cast<__nv_bfloat16*>(base)[i] = fromFloat ? __nv_bfloat16(float(v)) : __nv_bfloat16(v); break;
    default: static_cast<__half*>(base)[i] = fromFloat ? __half(float(v)) : __half(v); break;
  }
}

// Element (r, c) of matrix `b` (batch index) under layout `l`.
int64_t offset(const Layout& l, int64_t b, uint64_t r, uint64_t c) {
  return b * l.batchStride + (l.order == kRow ? int64_t(r) * l.ld + int64_t(c) : int64_t(r) + int64_t(c) * l.ld);
}

// The problem the descriptors describe, checked as the library does: m x k times k x n into m x n.
struct Problem {
  uint64_t m, n, k;
  int32_t batch;
  std::string error;
};

std::string layoutProblem(const Layout& l, const char* name) {
  if (!typeSize(l.type)) return std::string(name) + ": type " + std::to_string(l.type) + " is not supported";
  if (l.order != kCol && l.order != kRow) return std::string(name) + ": only CUBLASLT_ORDER_COL/ROW are emulated";
  uint64_t minLd = l.order == kCol ? l.rows : l.cols;
  if (l.ld < 0 || uint64_t(l.ld) < std::max<uint64_t>(1, minLd))
    return std::string(name) + ": leading dimension " + std::to_string(l.ld) + " is smaller than its " +
           (l.order == kCol ? "rows (" : "columns (") + std::to_string(minLd) + ") for its order";
  if (l.batch < 1) return std::string(name) + ": batch count " + std::to_string(l.batch);
  if (l.batchStride < 0) return std::string(name) + ": negative batch stride";
  if (l.planeOffset != 0) return std::string(name) + ": planar complex layouts are not emulated";
  return "";
}

Problem check(const MatmulDesc& d, const Layout& a, const Layout& b, const Layout& c, const Layout& dd) {
  Problem p{};
  auto bad = [&](const std::string& s) {
    p.error = s;
    return p;
  };
  for (auto [l, name] : {std::pair<const Layout*, const char*>{&a, "A"}, {&b, "B"}, {&c, "C"}, {&dd, "D"}}) {
    std::string e = layoutProblem(*l, name);
    if (!e.empty()) return bad(e);
  }
  if (d.transA == kOpC || d.transB == kOpC || d.transA < 0 || d.transA > 2 || d.transB < 0 || d.transB > 2)
    return bad("TRANSA/TRANSB: only CUBLAS_OP_N and CUBLAS_OP_T apply to real types");
  if (d.transC != kOpN) return bad("TRANSC: only CUBLAS_OP_N is supported");
  if (d.pointerMode != 0) return bad("POINTER_MODE: only host alpha/beta are emulated");
  p.m = dd.rows;
  p.n = dd.cols;
  const uint64_t am = d.transA == kOpN ? a.rows : a.cols, ak = d.transA == kOpN ? a.cols : a.rows;
  const uint64_t bk = d.transB == kOpN ? b.rows : b.cols, bn = d.transB == kOpN ? b.cols : b.rows;
  if (am != p.m) return bad("op(A) has " + std::to_string(am) + " rows, D has " + std::to_string(p.m));
  if (bn != p.n) return bad("op(B) has " + std::to_string(bn) + " columns, D has " + std::to_string(p.n));
  if (ak != bk) return bad("op(A) has " + std::to_string(ak) + " columns, op(B) " + std::to_string(bk) + " rows");
  if (c.rows != dd.rows || c.cols != dd.cols) return bad("C and D differ in shape");
  if (c.type != dd.type) return bad(std::string("C is ") + typeName(c.type) + ", D " + typeName(dd.type));
  p.k = ak;
  if (a.batch != dd.batch || b.batch != dd.batch || c.batch != dd.batch)
    return bad("batch counts differ: A " + std::to_string(a.batch) + ", B " + std::to_string(b.batch) + ", C " +
               std::to_string(c.batch) + ", D " + std::to_string(dd.batch));
  p.batch = dd.batch;
  if (a.type != b.type) return bad(std::string("A is ") + typeName(a.type) + ", B " + typeName(b.type));
  // The supported type combinations (cublasLtMatmul's table) for the types meshtrain uses.
  const bool c64 = d.compute == k64F || d.compute == k64FPedantic;
  const bool c32 = d.compute == k32F || d.compute == k32FPedantic || d.compute == k32FFastTF32;
  if (c64) {
    if (d.scale != kR64F || a.type != kR64F || dd.type != kR64F) return bad("CUBLAS_COMPUTE_64F takes only CUDA_R_64F");
  } else if (c32) {
    if (d.scale != kR32F) return bad("CUBLAS_COMPUTE_32F needs scale type CUDA_R_32F");
    if (a.type == kR32F && dd.type != kR32F) return bad("f32 inputs need an f32 output");
    if ((a.type == kR16BF || a.type == kR16F) && dd.type != a.type && dd.type != kR32F)
      return bad(std::string(typeName(a.type)) + " inputs give " + typeName(a.type) + " or CUDA_R_32F, not " + typeName(dd.type));
    if (a.type == kR64F) return bad("CUDA_R_64F inputs need CUBLAS_COMPUTE_64F");
  } else {
    return bad("compute type " + std::to_string(d.compute) + " is not emulated");
  }
  const bool bgrad = d.epilogue == kEpilogueBgradA || d.epilogue == kEpilogueBgradB;
  if (d.epilogue != kEpilogueDefault && d.epilogue != kEpilogueBias && !bgrad && !isGelu(d.epilogue) && d.epilogue != kEpilogueDGelu)
    return bad("epilogue " + std::to_string(d.epilogue) + " is not emulated (DEFAULT, BIAS, BGRADA, BGRADB, the GELU forms and DGELU are)");
  if (hasAux(d.epilogue)) {
    // The GELU input matrix is laid out like D (column-major here), its leading dimension given on its own.
    if (d.auxLd % 8 != 0 || d.auxLd < int64_t(std::max<uint64_t>(1, dd.rows)))
      return bad("CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD " + std::to_string(d.auxLd) + ": the GELU input's leading dimension must be a multiple of 8 and at least D's " + std::to_string(dd.rows) + " rows");
    if (dd.batch > 1 && d.auxBatchStride % 8 != 0)
      return bad("CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE " + std::to_string(d.auxBatchStride) + " is not a multiple of 8");
    if (d.auxType != -1 && uint32_t(d.auxType) != dd.type)
      return bad(std::string("CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE ") + typeName(uint32_t(d.auxType)) + " with D of " + typeName(dd.type) + ": only fp8 kernels take another type");
  }
  if (d.biasType != -1 && uint32_t(d.biasType) != dd.type)
    return bad(std::string("CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE ") + typeName(uint32_t(d.biasType)) + " with D of " +
               typeName(dd.type) + ": outside IMMA and fp8 kernels the bias is in D's type");
  if (bgrad && dd.batch != 1) return bad("bias gradient epilogues with a batch count above 1 are not emulated");
  return p;
}

// A fingerprint of everything the algorithm was chosen for, so reusing it elsewhere is caught.
uint64_t fingerprint(const MatmulDesc& d, const Layout* ls[4], const uint32_t align[4]) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](uint64_t v) {
    h ^= v;
    h *= 1099511628211ull;
  };
  mix(uint64_t(d.compute)), mix(uint64_t(d.scale)), mix(uint64_t(d.transA)), mix(uint64_t(d.transB)), mix(d.epilogue);
  for (int i = 0; i < 4; i++) {
    const Layout& l = *ls[i];
    mix(l.type), mix(uint64_t(l.order)), mix(l.rows), mix(l.cols), mix(uint64_t(l.ld)), mix(uint64_t(l.batch)),
        mix(uint64_t(l.batchStride));
  }
  for (int i = 0; i < 4; i++) mix(align[i]);
  return h;
}

// GELU's tanh form, x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), in the compute type.
template <typename T>
T gelu(T x) {
  const T c = T(0.7978845608028654), k = T(0.044715);
  return T(0.5) * x * (T(1) + std::tanh(c * (x + k * x * x * x)));
}

// The derivative of that GELU at x, in the compute type.
template <typename T>
T geluGrad(T x) {
  const T c = T(0.7978845608028654), k = T(0.044715);
  const T t = std::tanh(c * (x + k * x * x * x));
  return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * c * (T(1) + T(3) * k * x * x);
}

uint32_t alignmentOf(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t n = 1;
  while (n < 256 && a % (2 * n) == 0) n *= 2;
  return n;
}

// One cublasLtMatmul by value: descriptor and layout contents (the caller may destroy them once
// the call returns, as real captured kernels keep their parameters), host alpha/beta, pointers.
struct MatmulCall {
  MatmulDesc md;
  Layout la, lb, lc, ld;
  Problem p;
  bool f64;
  double al, be;
  const void *A, *B, *C;
  void* D;
};

using CaptureHook = int (*)(void* stream, void (*run)(void*), void* ctx, void (*drop)(void*));
CaptureHook captureHook = nullptr;

// The arithmetic of every matmul, called at once or at each replay of a captured one.
void compute(const MatmulCall& call) {
  if (skipWork()) return;
  const MatmulDesc& md = call.md;
  const Layout &la = call.la, &lb = call.lb, &lc = call.lc, &ld = call.ld;
  const Problem& p = call.p;
  const bool f64 = call.f64;
  const double al = call.al, be = call.be;
  const void *A = call.A, *B = call.B, *C = call.C;
  void* D = call.D;
  for (int32_t bi = 0; bi < p.batch; bi++)
    for (uint64_t j = 0; j < p.n; j++)
      for (uint64_t i = 0; i < p.m; i++) {
        double out;
        if (f64) {
          double acc = 0;
          for (uint64_t k = 0; k < p.k; k++) {
            double x = load(A, la.type, md.transA == kOpN ? offset(la, bi, i, k) : offset(la, bi, k, i));
            double y = load(B, lb.type, md.transB == kOpN ? offset(lb, bi, k, j) : offset(lb, bi, j, k));
            acc += x * y;
          }
          out = al * acc;
          if (be != 0) out += be * load(C, lc.type, offset(lc, bi, i, j));  // beta == 0: C is not read
          if (addsBias(md.epilogue)) out += load(md.bias, ld.type, int64_t(bi) * md.biasBatchStride + int64_t(i));
          const int64_t auxAt = bi * md.auxBatchStride + int64_t(i) + int64_t(j) * md.auxLd;
          if (md.epilogue == kEpilogueDGelu) out *= geluGrad(load(md.aux, ld.type, auxAt));
          else if (hasAux(md.epilogue)) store(md.aux, ld.type, auxAt, out, false);
          if (isGelu(md.epilogue)) out = gelu(out);
        } else {
          float acc = 0;  // f32 accumulation, as for every 16-bit and f32 input here
          for (uint64_t k = 0; k < p.k; k++) {
            float x = float(load(A, la.type, md.transA == kOpN ? offset(la, bi, i, k) : offset(la, bi, k, i)));
            float y = float(load(B, lb.type, md.transB == kOpN ? offset(lb, bi, k, j) : offset(lb, bi, j, k)));
            acc += x * y;
          }
          float o = float(al) * acc;
          if (be != 0) o += float(be) * float(load(C, lc.type, offset(lc, bi, i, j)));
          if (addsBias(md.epilogue)) o += float(load(md.bias, ld.type, int64_t(bi) * md.biasBatchStride + int64_t(i)));
          const int64_t auxAt = bi * md.auxBatchStride + int64_t(i) + int64_t(j) * md.auxLd;
          if (md.epilogue == kEpilogueDGelu) o *= geluGrad(float(load(md.aux, ld.type, auxAt)));
          else if (hasAux(md.epilogue)) store(md.aux, ld.type, auxAt, o, true);
          if (isGelu(md.epilogue)) o = gelu(o);
          out = o;
        }
        store(D, ld.type, offset(ld, bi, i, j), out, !f64);
      }
  // Bias gradients: sums over k of op(A)'s rows (m values) or op(B)'s columns (n values) of the
  // unscaled operands, accumulated in the compute type and rounded once to the bias type.
  if (md.epilogue == kEpilogueBgradA || md.epilogue == kEpilogueBgradB) {
    const bool ofA = md.epilogue == kEpilogueBgradA;
    void* grad = const_cast<void*>(md.bias);
    for (uint64_t v = 0; v < (ofA ? p.m : p.n); v++) {
      double acc64 = 0;
      float acc32 = 0;
      for (uint64_t k = 0; k < p.k; k++) {
        double x = ofA ? load(A, la.type, md.transA == kOpN ? offset(la, 0, v, k) : offset(la, 0, k, v))
                       : load(B, lb.type, md.transB == kOpN ? offset(lb, 0, k, v) : offset(lb, 0, v, k));
        acc64 += x;
        acc32 += float(x);
      }
      store(grad, ld.type, int64_t(v), f64 ? acc64 : double(acc32), !f64);
    }
  }
}

// Computes now, or hands the call to the runtime when `stream` captures.
int launchMatmul(void* stream, const MatmulCall& call) {
  auto* c = new MatmulCall(call);
  if (captureHook &&
      captureHook(stream, [](void* x) { compute(*static_cast<MatmulCall*>(x)); }, c, [](void* x) { delete static_cast<MatmulCall*>(x); }))
    return kSuccess;
  compute(*c);
  delete c;
  return kSuccess;
}

}  // namespace

extern "C" {

// The emulated runtime's stream-capture hook (graph.cc's mtEmuCaptureHook), set right after dlopen.
void mtEmuSetCaptureHook(CaptureHook hook) { captureHook = hook; }

size_t cublasLtGetVersion() { return 130000; }

int cublasLtCreate(void** handle) {
  if (!handle) return reject(kInvalidValue, "cublasLtCreate: null handle pointer");
  *handle = track(new Handle);
  return kSuccess;
}
int cublasLtDestroy(void* handle) { return destroy(static_cast<Handle*>(handle), "cublasLtDestroy"); }

int cublasLtMatmulDescCreate(void** desc, int32_t compute, int32_t scale) {
  auto* d = new MatmulDesc;
  d->compute = compute;
  d->scale = scale;
  *desc = track(d);
  return kSuccess;
}
int cublasLtMatmulDescDestroy(void* desc) { return destroy(static_cast<MatmulDesc*>(desc), "cublasLtMatmulDescDestroy"); }
int cublasLtMatmulDescSetAttribute(void* desc, int attr, const void* buf, size_t size) {
  if (!isLive(desc)) return reject(kInvalidValue, "cublasLtMatmulDescSetAttribute: unknown descriptor");
  auto& d = *static_cast<MatmulDesc*>(desc);
  switch (attr) {
    case 0: return setValue(d.compute, buf, size, "CUBLASLT_MATMUL_DESC_COMPUTE_TYPE");
    case 1: return setValue(d.scale, buf, size, "CUBLASLT_MATMUL_DESC_SCALE_TYPE");
    case 2: return setValue(d.pointerMode, buf, size, "CUBLASLT_MATMUL_DESC_POINTER_MODE");
    case 3: return setValue(d.transA, buf, size, "CUBLASLT_MATMUL_DESC_TRANSA");
    case 4: return setValue(d.transB, buf, size, "CUBLASLT_MATMUL_DESC_TRANSB");
    case 5: return setValue(d.transC, buf, size, "CUBLASLT_MATMUL_DESC_TRANSC");
    case 7: return setValue(d.epilogue, buf, size, "CUBLASLT_MATMUL_DESC_EPILOGUE");
    case 8: return setValue(d.bias, buf, size, "CUBLASLT_MATMUL_DESC_BIAS_POINTER");
    case 10: return setValue(d.biasBatchStride, buf, size, "CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE");
    case 11: return setValue(d.aux, buf, size, "CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER");
    case 12: return setValue(d.auxLd, buf, size, "CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD");
    case 13: return setValue(d.auxBatchStride, buf, size, "CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_BATCH_STRIDE");
    case 22: return setValue(d.auxType, buf, size, "CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE");
    case 26: return setValue(d.biasType, buf, size, "CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE");
    default: return reject(kNotSupported, "matmul descriptor attribute " + std::to_string(attr) + " is not emulated");
  }
}

int cublasLtMatrixLayoutCreate(void** layout, uint32_t type, uint64_t rows, uint64_t cols, int64_t ld) {
  auto* l = new Layout;
  l->type = type;
  l->rows = rows;
  l->cols = cols;
  l->ld = ld;
  *layout = track(l);
  return kSuccess;
}
int cublasLtMatrixLayoutDestroy(void* layout) { return destroy(static_cast<Layout*>(layout), "cublasLtMatrixLayoutDestroy"); }
int cublasLtMatrixLayoutSetAttribute(void* layout, int attr, const void* buf, size_t size) {
  if (!isLive(layout)) return reject(kInvalidValue, "cublasLtMatrixLayoutSetAttribute: unknown layout");
  auto& l = *static_cast<Layout*>(layout);
  switch (attr) {
    case 0: return setValue(l.type, buf, size, "CUBLASLT_MATRIX_LAYOUT_TYPE");
    case 1: return setValue(l.order, buf, size, "CUBLASLT_MATRIX_LAYOUT_ORDER");
    case 2: return setValue(l.rows, buf, size, "CUBLASLT_MATRIX_LAYOUT_ROWS");
    case 3: return setValue(l.cols, buf, size, "CUBLASLT_MATRIX_LAYOUT_COLS");
    case 4: return setValue(l.ld, buf, size, "CUBLASLT_MATRIX_LAYOUT_LD");
    case 5: return setValue(l.batch, buf, size, "CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT");
    case 6: return setValue(l.batchStride, buf, size, "CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET");
    case 7: return setValue(l.planeOffset, buf, size, "CUBLASLT_MATRIX_LAYOUT_PLANE_OFFSET");
    default: return reject(kInvalidValue, "matrix layout attribute " + std::to_string(attr) + " does not exist");
  }
}

int cublasLtMatmulPreferenceCreate(void** pref) {
  *pref = track(new Preference);
  return kSuccess;
}
int cublasLtMatmulPreferenceDestroy(void* pref) { return destroy(static_cast<Preference*>(pref), "cublasLtMatmulPreferenceDestroy"); }
int cublasLtMatmulPreferenceSetAttribute(void* pref, int attr, const void* buf, size_t size) {
  if (!isLive(pref)) return reject(kInvalidValue, "cublasLtMatmulPreferenceSetAttribute: unknown preference");
  auto& p = *static_cast<Preference*>(pref);
  switch (attr) {
    case 0: return setValue(p.searchMode, buf, size, "CUBLASLT_MATMUL_PREF_SEARCH_MODE");
    case 1: return setValue(p.maxWorkspace, buf, size, "CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES");
    case 3: return setValue(p.reductionMask, buf, size, "CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK");
    case 5: case 6: case 7: case 8: {
      uint32_t v;
      if (int s = setValue(v, buf, size, "CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES")) return s;
      if (v == 0 || (v & (v - 1))) return reject(kInvalidValue, "a minimum alignment must be a power of two, got " + std::to_string(v));
      p.align[attr - 5] = v;
      return kSuccess;
    }
    case 12: return setValue(p.implMask, buf, size, "CUBLASLT_MATMUL_PREF_IMPL_MASK");
    default: return reject(kNotSupported, "preference attribute " + std::to_string(attr) + " is not emulated");
  }
}

int cublasLtMatmulAlgoGetHeuristic(void* handle, void* desc, void* a, void* b, void* c, void* d, void* pref, int requested,
                                   HeuristicResult* results, int* returned) {
  if (!isLive(handle)) return reject(kNotInitialized, "cublasLtMatmulAlgoGetHeuristic: unknown handle");
  if (!isLive(desc) || !isLive(a) || !isLive(b) || !isLive(c) || !isLive(d) || !isLive(pref))
    return reject(kInvalidValue, "cublasLtMatmulAlgoGetHeuristic: a descriptor is unknown or destroyed");
  if (requested < 1 || !results || !returned) return reject(kInvalidValue, "cublasLtMatmulAlgoGetHeuristic: requestedAlgoCount < 1");
  const auto& md = *static_cast<MatmulDesc*>(desc);
  const Layout* ls[4] = {static_cast<Layout*>(a), static_cast<Layout*>(b), static_cast<Layout*>(c), static_cast<Layout*>(d)};
  Problem p = check(md, *ls[0], *ls[1], *ls[2], *ls[3]);
  if (!p.error.empty()) return reject(kInvalidValue, "cublasLtMatmulAlgoGetHeuristic: " + p.error);
  const auto& pr = *static_cast<Preference*>(pref);
  std::memset(results, 0, sizeof(HeuristicResult));
  results[0].algo.data[0] = kAlgoMagic;
  results[0].algo.data[1] = fingerprint(md, ls, pr.align);
  for (int i = 0; i < 4; i++) results[0].algo.data[2 + i] = pr.align[i];
  // The heuristic reads the GELU input pointer's value for its alignment (the documented reason to set it first).
  results[0].algo.data[6] = hasAux(md.epilogue) ? alignmentOf(md.aux) : 0;
  results[0].workspaceSize = 0;
  results[0].state = kSuccess;
  results[0].wavesCount = 1.0f;
  *returned = 1;
  return kSuccess;
}

int cublasLtMatmul(void* handle, void* desc, const void* alpha, const void* A, void* adesc, const void* B, void* bdesc,
                   const void* beta, const void* C, void* cdesc, void* D, void* ddesc, const Algo* algo, void* workspace,
                   size_t workspaceBytes, void* stream) {
  (void)workspace, (void)workspaceBytes;  // no workspace needed
  if (!isLive(handle)) return reject(kNotInitialized, "cublasLtMatmul: unknown handle");
  if (!isLive(desc) || !isLive(adesc) || !isLive(bdesc) || !isLive(cdesc) || !isLive(ddesc))
    return reject(kInvalidValue, "cublasLtMatmul: a descriptor is unknown or destroyed");
  if (!alpha || !beta) return reject(kInvalidValue, "cublasLtMatmul: null alpha or beta");
  const auto& md = *static_cast<MatmulDesc*>(desc);
  const Layout* ls[4] = {static_cast<Layout*>(adesc), static_cast<Layout*>(bdesc), static_cast<Layout*>(cdesc),
                         static_cast<Layout*>(ddesc)};
  const Layout &la = *ls[0], &lb = *ls[1], &lc = *ls[2], &ld = *ls[3];
  Problem p = check(md, la, lb, lc, ld);
  if (!p.error.empty()) return reject(kInvalidValue, "cublasLtMatmul: " + p.error);
  if (algo) {
    uint32_t align[4];
    for (int i = 0; i < 4; i++) align[i] = uint32_t(algo->data[2 + i]);
    if (algo->data[0] != kAlgoMagic || algo->data[1] != fingerprint(md, ls, align))
      return reject(kInvalidValue, "cublasLtMatmul: the algorithm was chosen for other descriptors");
    const void* ptrs[4] = {A, B, C, D};
    const char* names = "ABCD";
    for (int i = 0; i < 4; i++)
      if (alignmentOf(ptrs[i]) < align[i])
        return reject(kInvalidValue, std::string("cublasLtMatmul: ") + names[i] + " is " + std::to_string(alignmentOf(ptrs[i])) +
                                         "-byte aligned; the algorithm was chosen for " + std::to_string(align[i]) +
                                         " (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_" + names[i] + "_BYTES)");
  }
  if (hasAux(md.epilogue)) {
    if (!md.aux) return reject(kInvalidValue, "cublasLtMatmul: a GELU_AUX or DGELU epilogue without CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER");
    if (algo && alignmentOf(md.aux) < algo->data[6])
      return reject(kInvalidValue, "cublasLtMatmul: the GELU input pointer is " + std::to_string(alignmentOf(md.aux)) +
                                       "-byte aligned; the algorithm was chosen for " + std::to_string(algo->data[6]));
    if (alignmentOf(md.aux) < typeSize(ld.type))
      return reject(kInvalidValue, "cublasLtMatmul: the GELU input pointer is not aligned to its elements");
  }
  if (addsBias(md.epilogue) || md.epilogue == kEpilogueBgradA || md.epilogue == kEpilogueBgradB) {
    // The pointer is read at this call (it may change after the algorithm was chosen).
    const char* what = addsBias(md.epilogue) ? "a bias epilogue" : "a bias gradient epilogue";
    if (!md.bias) return reject(kInvalidValue, std::string("cublasLtMatmul: ") + what + " without CUBLASLT_MATMUL_DESC_BIAS_POINTER");
    if (alignmentOf(md.bias) < typeSize(ld.type))
      return reject(kInvalidValue, std::string("cublasLtMatmul: the bias pointer is not aligned to its ") + typeName(ld.type) +
                                       " elements");
  }
  if (C == D && std::memcmp(&lc, &ld, sizeof(Layout)) != 0)
    return reject(kInvalidValue, "cublasLtMatmul: in place (C == D) needs identical C and D layouts");
  if (p.m == 0 || p.n == 0) return kSuccess;
  if (!A || !B || !D) return reject(kInvalidValue, "cublasLtMatmul: null A, B or D");
  const bool f64 = md.scale == kR64F;
  const double al = f64 ? *static_cast<const double*>(alpha) : *static_cast<const float*>(alpha);
  const double be = f64 ? *static_cast<const double*>(beta) : *static_cast<const float*>(beta);
  if (be != 0 && !C) return reject(kInvalidValue, "cublasLtMatmul: beta != 0 with a null C");
  return launchMatmul(stream, MatmulCall{md, la, lb, lc, ld, p, f64, al, be, A, B, C, D});
  return kSuccess;
}

}  // extern "C"
