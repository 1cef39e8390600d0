// A reference cuDNN for the emulated device (test tool): exactly the legacy convolution calls
// meshtrain makes (native/cuda/cudnn_api.h), implemented from cuDNN's documented semantics with
// plain loops in double, built as libcudnn.so.9 and found through MESHTRAIN_CUDA_LIB_PATH like
// the real one. "Device" memory is host memory here, so calls run synchronously.
// Its value is the checking: descriptors must describe consistent shapes, types and strides
// (output size from pad/stride/dilation, filter [K, C/groups, R, S], float compute for 16-bit
// data), an f32 convolution must not run with a math type that permits TF32, and the workspace
// must be at least what was asked for. The heuristics list a TF32 candidate and a
// non-deterministic one first, so a caller that takes them blindly fails. The status string of
// the last failure names the call and the problem. MESHTRAIN_CUDA_EMU_SKIP_WORK=1: the checks,
// then no arithmetic and no workspace write (host-cost measurement only). On a capturing stream
// (the runtime's hook, mtEmuSetCaptureHook) a convolution is recorded with everything it needs
// copied by value (descriptor contents, scalars, pointers) and computed at each graph replay.
// The three cudnnFind*AlgorithmEx report every algorithm sorted by a fake, deterministic time per
// algorithm index (fakeTime: the non-deterministic one fastest, then TF32, then the FMA ones), and
// fill the output they are given with NaN, so a caller that hands them a real tensor sees it.
// Algorithm 3 (deterministic FMA, listed last by the heuristics) accumulates in float rather than
// double, so a test can tell from the values that the search picked another algorithm.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include "cudnn_common.h"

namespace mtdnn {

CaptureHook captureHook = nullptr;

thread_local std::string lastError = "CUDNN_STATUS_SUCCESS";

bool skipWork() {
  static const bool skip = [] {
    const char* e = std::getenv("MESHTRAIN_CUDA_EMU_SKIP_WORK");
    return e && *e && std::strcmp(e, "0") != 0;
  }();
  return skip;
}

int fail(int status, const std::string& msg) {
  lastError = msg;
  return status;
}

struct Tensor {
  int type = -1, nd = 0;
  int dims[8] = {}, strides[8] = {};
};
struct Filter {
  int type = -1, format = 0, nd = 0;
  int dims[8] = {};
};
struct Conv {
  int pad[2] = {}, stride[2] = {1, 1}, dil[2] = {1, 1}, mode = 1, compute = kFloat, groups = 1, math = 0;
};

struct AlgoPerf {
  int algo, status;
  float time;
  size_t memory;
  int determinism, mathType, reserved[3];
};

// 16-bit floats as the CPU kernels round them: to nearest even, NaN kept.
float bf16ToFloat(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t floatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
float f16ToFloat(uint16_t h) {
  _Float16 v;
  std::memcpy(&v, &h, 2);
  return float(v);
}
uint16_t floatToF16(float f) {
  const _Float16 h = _Float16(f);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}

}  // namespace mtdnn

namespace {

using namespace mtdnn;
constexpr int kFmaMath = 3;

bool typeOk(int t) { return t == kFloat || t == kDouble || t == kHalf || t == kBf16; }

double loadAt(int type, const void* base, int64_t i) {
  switch (type) {
    case kFloat: return static_cast<const float*>(base)[i];
    case kDouble: return static_cast<const double*>(base)[i];
    case kHalf: return f16ToFloat(static_cast<const uint16_t*>(base)[i]);
    default: return bf16ToFloat(static_cast<const uint16_t*>(base)[i]);
  }
}

void storeAt(int type, void* base, int64_t i, double v) {
  switch (type) {
    case kFloat: static_cast<float*>(base)[i] = float(v); break;
    case kDouble: static_cast<double*>(base)[i] = v; break;
    case kHalf: static_cast<uint16_t*>(base)[i] = floatToF16(float(v)); break;
    default: static_cast<uint16_t*>(base)[i] = floatToBf16(float(v)); break;
  }
}

// The geometry of one convolution, after checking the descriptors against each other.
struct Problem {
  const Tensor *x, *y;
  const Filter* w;
  const Conv* c;
  int N, C, H, W, K, Cg, R, S, P, Q;
  int64_t wAt(int k, int cg, int r, int s) const {
    if (c->mode == 0) r = R - 1 - r, s = S - 1 - s;  // CUDNN_CONVOLUTION flips the filter
    return w->format == 0 ? ((int64_t(k) * Cg + cg) * R + r) * S + s : ((int64_t(k) * R + r) * S + s) * Cg + cg;
  }
  static int64_t at(const Tensor* t, int n, int c, int h, int w) {
    return int64_t(n) * t->strides[0] + int64_t(c) * t->strides[1] + int64_t(h) * t->strides[2] + int64_t(w) * t->strides[3];
  }
};

int check(const char* call, const Tensor* x, const Filter* w, const Conv* c, const Tensor* y, Problem* p) {
  if (!x || !w || !c || !y) return fail(kBadParam, std::string(call) + ": null descriptor");
  if (x->nd != 4 || y->nd != 4 || w->nd != 4) return fail(kNotSupported, std::string(call) + ": only 4-d tensors are emulated");
  if (x->type != y->type || x->type != w->type) return fail(kBadParam, std::string(call) + ": tensor and filter data types differ");
  const bool dbl = x->type == kDouble;
  if (c->compute != (dbl ? kDouble : kFloat))
    return fail(kBadParam, std::string(call) + ": compute type must be float for float/half/bf16 data, double for double");
  *p = Problem{x, y, w, c, x->dims[0], x->dims[1], x->dims[2], x->dims[3], w->dims[0], w->dims[1], w->dims[2], w->dims[3], 0, 0};
  if (p->Cg * c->groups != p->C || p->K % c->groups)
    return fail(kBadParam, std::string(call) + ": filter C " + std::to_string(p->Cg) + " x groups " + std::to_string(c->groups) +
                               " != input C " + std::to_string(p->C) + " or K not divisible by groups");
  p->P = (p->H + 2 * c->pad[0] - ((p->R - 1) * c->dil[0] + 1)) / c->stride[0] + 1;
  p->Q = (p->W + 2 * c->pad[1] - ((p->S - 1) * c->dil[1] + 1)) / c->stride[1] + 1;
  if (y->dims[0] != p->N || y->dims[1] != p->K || y->dims[2] != p->P || y->dims[3] != p->Q)
    return fail(kBadParam, std::string(call) + ": output dims [" + std::to_string(y->dims[0]) + ", " + std::to_string(y->dims[1]) + ", " +
                               std::to_string(y->dims[2]) + ", " + std::to_string(y->dims[3]) + "] should be [" + std::to_string(p->N) + ", " +
                               std::to_string(p->K) + ", " + std::to_string(p->P) + ", " + std::to_string(p->Q) + "]");
  return kSuccess;
}

int algos(const char* call, const Tensor* x, const Filter* w, const Conv* c, const Tensor* y, int requested, int* returned,
          AlgoPerf* perf) {
  Problem p;
  if (int st = check(call, x, w, c, y, &p)) return st;
  if (!returned || !perf || requested < 1) return fail(kBadParam, std::string(call) + ": bad result buffer");
  // A TF32 candidate (f32 must skip it), a non-deterministic one, then the deterministic FMA one.
  // Algorithm 3 (deterministic FMA too) comes last, so the heuristic choice of f32 stays 1.
  const AlgoPerf all[4] = {{2, kSuccess, 1.f, 64, 1, 1, {}}, {0, kSuccess, 2.f, 0, 0, c->math, {}}, {1, kSuccess, 3.f, 256, 1, kFmaMath, {}},
                           {3, kSuccess, 4.f, 1024, 1, kFmaMath, {}}};
  *returned = requested < 4 ? requested : 4;
  for (int i = 0; i < *returned; i++) perf[i] = all[i];
  return kSuccess;
}

size_t workspaceOf(int algo) { return algo == 3 ? 1024 : algo == 1 ? 256 : algo == 2 ? 64 : 0; }
// Find's fake milliseconds by algorithm: 0 (non-deterministic) < 2 (TF32) < 3 < 1.
float fakeTime(int algo) { return algo == 0 ? 0.5f : algo == 2 ? 1.f : algo == 3 ? 2.f : 3.f; }

// Checks the math type and the workspace.
int prepare(const char* call, const Problem& p, int algo, void* ws, size_t wsBytes) {
  if (p.x->type == kFloat && p.c->math != kFmaMath)
    return fail(kNotSupported, std::string(call) + ": an f32 convolution with math type " + std::to_string(p.c->math) +
                                   " may use TF32 (meshtrain asks for CUDNN_FMA_MATH)");
  if (algo < 0 || algo > 3) return fail(kBadParam, std::string(call) + ": unknown algorithm " + std::to_string(algo));
  if (wsBytes < workspaceOf(algo) || (workspaceOf(algo) && !ws))
    return fail(kBadParam, std::string(call) + ": workspace of " + std::to_string(wsBytes) + " bytes for algorithm " + std::to_string(algo));
  return kSuccess;
}

double scalar(const Problem& p, const void* v) {
  return p.x->type == kDouble ? *static_cast<const double*>(v) : *static_cast<const float*>(v);
}

void put(int type, void* base, int64_t i, double acc, double alpha, double beta) {
  storeAt(type, base, i, alpha * acc + (beta != 0 ? beta * loadAt(type, base, i) : 0.0));
}

// One convolution call by value: descriptor contents (the caller may destroy its descriptors
// once the call returns, as real captured kernels keep their parameters), scalars and pointers.
// x/y/w are the roles check() gives them: forward x, w -> y; backward data w, dy (y) -> dx (x);
// backward filter x, dy (y) -> dw (w).
enum ConvOp { kForward, kBackwardData, kBackwardFilter };
struct ConvCall {
  ConvOp op;
  Tensor x, y;
  Filter w;
  Conv c;
  const void *in0, *in1;  // forward x, w; backward data w, dy; backward filter x, dy
  void* out;
  void* ws;
  size_t wsBytes;
  double alpha, beta;
  int algo;
};

// acc + term in double, or rounded to float at each step for algorithm 3 (see the file comment).
double addTerm(bool inFloat, double acc, double term) { return inFloat ? double(float(acc) + float(term)) : acc + term; }


// The arithmetic of every convolution, called at once or at each replay of a captured one;
// kFloatAcc for algorithm 3 (a template, so the other algorithms' loops carry no branch for it).
template <bool kFloatAcc>
void computeAs(const ConvCall& k) {
  if (skipWork()) return;
  if (k.ws) std::memset(k.ws, 0xab, k.wsBytes);  // a workspace that is not writable device memory crashes here
  Problem p;
  check("convolution", &k.x, &k.w, &k.c, &k.y, &p);  // passed when the call was made
  const Conv* cd = &k.c;
  const double a = k.alpha, b = k.beta;
  const int Kg = p.K / cd->groups;
  constexpr bool f = kFloatAcc;
  if (k.op == kForward) {
    // y[n, k, p, q] = Σ_{c, r, s} x[n, g·Cg + c, p·sh − ph + r·dh, q·sw − pw + s·dw] · w[k, c, r, s]
    const void *x = k.in0, *w = k.in1;
    for (int n = 0; n < p.N; n++)
      for (int kk = 0; kk < p.K; kk++)
        for (int oh = 0; oh < p.P; oh++)
          for (int ow = 0; ow < p.Q; ow++) {
            double acc = 0;
            for (int c = 0; c < p.Cg; c++)
              for (int r = 0; r < p.R; r++)
                for (int s = 0; s < p.S; s++) {
                  const int h = oh * cd->stride[0] - cd->pad[0] + r * cd->dil[0], ww = ow * cd->stride[1] - cd->pad[1] + s * cd->dil[1];
                  if (h < 0 || h >= p.H || ww < 0 || ww >= p.W) continue;
                  acc = addTerm(f, acc, loadAt(p.x->type, x, Problem::at(&k.x, n, (kk / Kg) * p.Cg + c, h, ww)) * loadAt(p.x->type, w, p.wAt(kk, c, r, s)));
                }
            put(p.x->type, k.out, Problem::at(&k.y, n, kk, oh, ow), acc, a, b);
          }
  } else if (k.op == kBackwardData) {
    const void *w = k.in0, *dy = k.in1;
    for (int n = 0; n < p.N; n++)
      for (int c = 0; c < p.C; c++)
        for (int h = 0; h < p.H; h++)
          for (int ww = 0; ww < p.W; ww++) {
            double acc = 0;
            const int g = c / p.Cg;
            for (int kk = g * Kg; kk < (g + 1) * Kg; kk++)
              for (int r = 0; r < p.R; r++)
                for (int s = 0; s < p.S; s++) {
                  const int th = h + cd->pad[0] - r * cd->dil[0], tw = ww + cd->pad[1] - s * cd->dil[1];
                  if (th < 0 || tw < 0 || th % cd->stride[0] || tw % cd->stride[1]) continue;
                  const int oh = th / cd->stride[0], ow = tw / cd->stride[1];
                  if (oh >= p.P || ow >= p.Q) continue;
                  acc = addTerm(f, acc, loadAt(p.x->type, dy, Problem::at(&k.y, n, kk, oh, ow)) * loadAt(p.x->type, w, p.wAt(kk, c % p.Cg, r, s)));
                }
            put(p.x->type, k.out, Problem::at(&k.x, n, c, h, ww), acc, a, b);
          }
  } else {
    const void *x = k.in0, *dy = k.in1;
    for (int kk = 0; kk < p.K; kk++)
      for (int c = 0; c < p.Cg; c++)
        for (int r = 0; r < p.R; r++)
          for (int s = 0; s < p.S; s++) {
            double acc = 0;
            for (int n = 0; n < p.N; n++)
              for (int oh = 0; oh < p.P; oh++)
                for (int ow = 0; ow < p.Q; ow++) {
                  const int h = oh * cd->stride[0] - cd->pad[0] + r * cd->dil[0], ww = ow * cd->stride[1] - cd->pad[1] + s * cd->dil[1];
                  if (h < 0 || h >= p.H || ww < 0 || ww >= p.W) continue;
                  acc = addTerm(f, acc, loadAt(p.x->type, dy, Problem::at(&k.y, n, kk, oh, ow)) * loadAt(p.x->type, x, Problem::at(&k.x, n, (kk / Kg) * p.Cg + c, h, ww)));
                }
            // The filter flip of CUDNN_CONVOLUTION applies to where the gradient lands too.
            put(p.x->type, k.out, p.wAt(kk, c, r, s), acc, a, b);
          }
  }
}

void compute(const ConvCall& k) { k.algo == 3 ? computeAs<true>(k) : computeAs<false>(k); }

// Computes now, or hands the call to the runtime when the handle's stream captures.
int launchConv(const Handle* h, const ConvCall& k) {
  auto* call = new ConvCall(k);
  if (captureHook &&
      captureHook(h->stream, [](void* c) { compute(*static_cast<ConvCall*>(c)); }, call, [](void* c) { delete static_cast<ConvCall*>(c); }))
    return kSuccess;
  compute(*call);
  delete call;
  return kSuccess;
}

// The elements a dense descriptor spans: its largest offset plus one.
int64_t extentOf(const Tensor& t) {
  int64_t e = 1;
  for (int k = 0; k < t.nd; k++) e += int64_t(t.dims[k] - 1) * t.strides[k];
  return e;
}

// cudnnFind*AlgorithmEx after the descriptor check: refuses a capturing stream (a timed search
// synchronizes), fills the output with NaN and writes the workspace, then reports the algorithms of
// algos() with fake times, successful ones first, each group by time; those needing more workspace
// than given report CUDNN_STATUS_NOT_SUPPORTED (the emulator's choice of code).
int find(const char* call, const Problem& p, Handle* h, void* out, int64_t outElems, void* ws, size_t wsBytes, int requested,
         int* returned, AlgoPerf* perf) {
  if (!returned || !perf || requested < 1) return fail(kBadParam, std::string(call) + ": bad result buffer");
  if (!out || (wsBytes && !ws)) return fail(kBadParam, std::string(call) + ": null output or workspace pointer");
  // A null run asks the runtime whether the stream captures, recording nothing.
  if (captureHook && captureHook(h->stream, nullptr, nullptr, nullptr))
    return fail(kNotSupported, std::string(call) + ": the handle's stream is capturing a graph (a timed search synchronizes)");
  if (!skipWork()) {
    for (int64_t i = 0; i < outElems; i++) storeAt(p.x->type, out, i, std::nan(""));
    if (ws) std::memset(ws, 0xab, wsBytes);
  }
  AlgoPerf all[4];
  const int order[4] = {0, 2, 3, 1};  // by fakeTime
  int n = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int algo : order) {
      const bool fits = workspaceOf(algo) <= wsBytes;
      if (fits != (pass == 0)) continue;
      const int math = algo == 2 ? 1 : algo == 0 ? p.c->math : kFmaMath;
      all[n++] = AlgoPerf{algo, fits ? kSuccess : kNotSupported, fakeTime(algo), workspaceOf(algo), algo == 0 ? 0 : 1, math, {}};
    }
  *returned = requested < 4 ? requested : 4;
  for (int i = 0; i < *returned; i++) perf[i] = all[i];
  return kSuccess;
}

}  // namespace

extern "C" {

// The emulated runtime's stream-capture hook (graph.cc's mtEmuCaptureHook), set right after dlopen.
void mtEmuSetCaptureHook(CaptureHook hook) { captureHook = hook; }

size_t cudnnGetVersion() { return 90000; }
const char* cudnnGetErrorString(int) { return lastError.c_str(); }
int cudnnCreate(void** h) {
  *h = new Handle();
  return kSuccess;
}
int cudnnSetStream(void* h, void* stream) {
  static_cast<Handle*>(h)->stream = stream;
  return kSuccess;
}

int cudnnCreateTensorDescriptor(void** d) {
  *d = new Tensor();
  return kSuccess;
}
int cudnnSetTensorNdDescriptor(void* d, int type, int nd, const int* dims, const int* strides) {
  if (!typeOk(type) || nd < 3 || nd > 8) return fail(kBadParam, "cudnnSetTensorNdDescriptor: bad data type or rank");
  auto* t = static_cast<Tensor*>(d);
  t->type = type, t->nd = nd;
  for (int k = 0; k < nd; k++) {
    if (dims[k] <= 0 || strides[k] <= 0) return fail(kBadParam, "cudnnSetTensorNdDescriptor: dims and strides must be positive");
    t->dims[k] = dims[k], t->strides[k] = strides[k];
  }
  return kSuccess;
}
int cudnnDestroyTensorDescriptor(void* d) {
  delete static_cast<Tensor*>(d);
  return kSuccess;
}

int cudnnCreateFilterDescriptor(void** d) {
  *d = new Filter();
  return kSuccess;
}
int cudnnSetFilterNdDescriptor(void* d, int type, int format, int nd, const int* dims) {
  if (!typeOk(type) || (format != 0 && format != 1) || nd != 4) return fail(kBadParam, "cudnnSetFilterNdDescriptor: bad type, format or rank");
  auto* f = static_cast<Filter*>(d);
  f->type = type, f->format = format, f->nd = nd;
  for (int k = 0; k < nd; k++) {
    if (dims[k] <= 0) return fail(kBadParam, "cudnnSetFilterNdDescriptor: dims must be positive");
    f->dims[k] = dims[k];
  }
  return kSuccess;
}
int cudnnDestroyFilterDescriptor(void* d) {
  delete static_cast<Filter*>(d);
  return kSuccess;
}

int cudnnCreateConvolutionDescriptor(void** d) {
  *d = new Conv();
  return kSuccess;
}
int cudnnSetConvolutionNdDescriptor(void* d, int n, const int* pad, const int* stride, const int* dil, int mode, int compute) {
  if (n != 2 || (mode != 0 && mode != 1) || (compute != kFloat && compute != kDouble))
    return fail(kBadParam, "cudnnSetConvolutionNdDescriptor: bad rank, mode or compute type");
  auto* c = static_cast<Conv*>(d);
  for (int k = 0; k < 2; k++) {
    if (pad[k] < 0 || stride[k] <= 0 || dil[k] <= 0) return fail(kBadParam, "cudnnSetConvolutionNdDescriptor: bad pad, stride or dilation");
    c->pad[k] = pad[k], c->stride[k] = stride[k], c->dil[k] = dil[k];
  }
  c->mode = mode, c->compute = compute;
  return kSuccess;
}
int cudnnSetConvolutionGroupCount(void* d, int groups) {
  if (groups < 1) return fail(kBadParam, "cudnnSetConvolutionGroupCount: groups < 1");
  static_cast<Conv*>(d)->groups = groups;
  return kSuccess;
}
int cudnnSetConvolutionMathType(void* d, int math) {
  if (math < 0 || math > 3) return fail(kBadParam, "cudnnSetConvolutionMathType: unknown math type");
  static_cast<Conv*>(d)->math = math;
  return kSuccess;
}
int cudnnDestroyConvolutionDescriptor(void* d) {
  delete static_cast<Conv*>(d);
  return kSuccess;
}

int cudnnGetConvolutionForwardAlgorithm_v7(void*, const Tensor* x, const Filter* w, const Conv* c, const Tensor* y, int req, int* ret,
                                           AlgoPerf* perf) {
  return algos("cudnnGetConvolutionForwardAlgorithm_v7", x, w, c, y, req, ret, perf);
}
int cudnnGetConvolutionBackwardDataAlgorithm_v7(void*, const Filter* w, const Tensor* dy, const Conv* c, const Tensor* dx, int req,
                                                int* ret, AlgoPerf* perf) {
  return algos("cudnnGetConvolutionBackwardDataAlgorithm_v7", dx, w, c, dy, req, ret, perf);
}
int cudnnGetConvolutionBackwardFilterAlgorithm_v7(void*, const Tensor* x, const Tensor* dy, const Conv* c, const Filter* dw, int req,
                                                  int* ret, AlgoPerf* perf) {
  return algos("cudnnGetConvolutionBackwardFilterAlgorithm_v7", x, dw, c, dy, req, ret, perf);
}

int cudnnGetConvolutionForwardWorkspaceSize(void*, const Tensor* x, const Filter* w, const Conv* c, const Tensor* y, int algo, size_t* b) {
  Problem p;
  if (int st = check("cudnnGetConvolutionForwardWorkspaceSize", x, w, c, y, &p)) return st;
  *b = workspaceOf(algo);
  return kSuccess;
}
int cudnnGetConvolutionBackwardDataWorkspaceSize(void*, const Filter* w, const Tensor* dy, const Conv* c, const Tensor* dx, int algo,
                                                 size_t* b) {
  Problem p;
  if (int st = check("cudnnGetConvolutionBackwardDataWorkspaceSize", dx, w, c, dy, &p)) return st;
  *b = workspaceOf(algo);
  return kSuccess;
}
int cudnnGetConvolutionBackwardFilterWorkspaceSize(void*, const Tensor* x, const Tensor* dy, const Conv* c, const Filter* dw, int algo,
                                                   size_t* b) {
  Problem p;
  if (int st = check("cudnnGetConvolutionBackwardFilterWorkspaceSize", x, dw, c, dy, &p)) return st;
  *b = workspaceOf(algo);
  return kSuccess;
}

int cudnnFindConvolutionForwardAlgorithmEx(void* h, const Tensor* xd, const void* x, const Filter* wd, const void* w, const Conv* cd,
                                           const Tensor* yd, void* y, int req, int* ret, AlgoPerf* perf, void* ws, size_t wsBytes) {
  const char* call = "cudnnFindConvolutionForwardAlgorithmEx";
  Problem p;
  if (int st = check(call, xd, wd, cd, yd, &p)) return st;
  if (!x || !w) return fail(kBadParam, std::string(call) + ": null input pointer");
  return find(call, p, static_cast<Handle*>(h), y, extentOf(*yd), ws, wsBytes, req, ret, perf);
}
int cudnnFindConvolutionBackwardDataAlgorithmEx(void* h, const Filter* wd, const void* w, const Tensor* dyd, const void* dy, const Conv* cd,
                                                const Tensor* dxd, void* dx, int req, int* ret, AlgoPerf* perf, void* ws, size_t wsBytes) {
  const char* call = "cudnnFindConvolutionBackwardDataAlgorithmEx";
  Problem p;
  if (int st = check(call, dxd, wd, cd, dyd, &p)) return st;
  if (!w || !dy) return fail(kBadParam, std::string(call) + ": null input pointer");
  return find(call, p, static_cast<Handle*>(h), dx, extentOf(*dxd), ws, wsBytes, req, ret, perf);
}
int cudnnFindConvolutionBackwardFilterAlgorithmEx(void* h, const Tensor* xd, const void* x, const Tensor* dyd, const void* dy, const Conv* cd,
                                                  const Filter* dwd, void* dw, int req, int* ret, AlgoPerf* perf, void* ws, size_t wsBytes) {
  const char* call = "cudnnFindConvolutionBackwardFilterAlgorithmEx";
  Problem p;
  if (int st = check(call, xd, dwd, cd, dyd, &p)) return st;
  if (!x || !dy) return fail(kBadParam, std::string(call) + ": null input pointer");
  const int64_t elems = int64_t(dwd->dims[0]) * dwd->dims[1] * dwd->dims[2] * dwd->dims[3];
  return find(call, p, static_cast<Handle*>(h), dw, elems, ws, wsBytes, req, ret, perf);
}

int cudnnConvolutionForward(void* h, const void* alpha, const Tensor* xd, const void* x, const Filter* wd, const void* w, const Conv* cd,
                            int algo, void* ws, size_t wsBytes, const void* beta, const Tensor* yd, void* y) {
  const char* call = "cudnnConvolutionForward";
  Problem p;
  if (int st = check(call, xd, wd, cd, yd, &p)) return st;
  if (int st = prepare(call, p, algo, ws, wsBytes)) return st;
  if (!x || !w || !y) return fail(kExecutionFailed, std::string(call) + ": null data pointer");
  return launchConv(static_cast<Handle*>(h), ConvCall{kForward, *xd, *yd, *wd, *cd, x, w, y, ws, wsBytes, scalar(p, alpha), scalar(p, beta), algo});
}

int cudnnConvolutionBackwardData(void* h, const void* alpha, const Filter* wd, const void* w, const Tensor* dyd, const void* dy,
                                 const Conv* cd, int algo, void* ws, size_t wsBytes, const void* beta, const Tensor* dxd, void* dx) {
  const char* call = "cudnnConvolutionBackwardData";
  Problem p;
  if (int st = check(call, dxd, wd, cd, dyd, &p)) return st;
  if (int st = prepare(call, p, algo, ws, wsBytes)) return st;
  if (!w || !dy || !dx) return fail(kExecutionFailed, std::string(call) + ": null data pointer");
  return launchConv(static_cast<Handle*>(h), ConvCall{kBackwardData, *dxd, *dyd, *wd, *cd, w, dy, dx, ws, wsBytes, scalar(p, alpha), scalar(p, beta), algo});
}

int cudnnConvolutionBackwardFilter(void* h, const void* alpha, const Tensor* xd, const void* x, const Tensor* dyd, const void* dy,
                                   const Conv* cd, int algo, void* ws, size_t wsBytes, const void* beta, const Filter* dwd, void* dw) {
  const char* call = "cudnnConvolutionBackwardFilter";
  Problem p;
  if (int st = check(call, xd, dwd, cd, dyd, &p)) return st;
  if (int st = prepare(call, p, algo, ws, wsBytes)) return st;
  if (!x || !dy || !dw) return fail(kExecutionFailed, std::string(call) + ": null data pointer");
  return launchConv(static_cast<Handle*>(h), ConvCall{kBackwardFilter, *xd, *dyd, *dwd, *cd, x, dy, dw, ws, wsBytes, scalar(p, alpha), scalar(p, beta), algo});
}

}  // extern "C"
