// Batched matmul: oneDNN for f32 and bf16 (strided operands passed as they are, primitives
// cached by shape), plain loops for f64. Also the raw-oneDNN peer that the benchmark compares to.
#include <algorithm>
#include <array>
#include <cstring>
#include <vector>
#include "cpu/onednn.h"
#include "cpu/reference.h"
#include "tensor/storage.h"
#include "util/args.h"
#include "util/strided.h"

namespace mt {
namespace {

constexpr int64_t kMatmulFamily = 1;

// One operand as oneDNN sees it: dims {batch (1 = broadcast), rows, cols}, element strides.
struct Operand {
  int64_t batch, rows, cols;
  int64_t s[3];
  int64_t extent() const { return (rows - 1) * s[1] + (cols - 1) * s[2] + 1; }
};

// Strides of size-1 dims do not address anything; give them the values that let oneDNN match a
// plain row- or column-major layout.
void canonicalize(Operand& p) {
  if (p.rows == 1 && p.cols == 1) p.s[1] = p.s[2] = 1;
  else if (p.rows == 1) p.s[1] = p.s[2] == 1 ? p.cols : 1;
  else if (p.cols == 1) p.s[2] = p.s[1] == 1 ? p.rows : 1;
  if (p.batch == 1) p.s[0] = p.extent();
}

// Row- or column-major with a leading dimension, and no two elements sharing an address (the
// batch may sit anywhere, e.g. [M, batch, K] memory): oneDNN's fast kernels take these directly.
// Anything else is packed first (oneDNN would fall back to reference code or refuse).
bool gemmable(const Operand& p) {
  if (p.s[1] != 1 && p.s[2] != 1) return false;
  std::array<std::pair<int64_t, int64_t>, 3> d{{{p.s[0], p.batch}, {p.s[1], p.rows}, {p.s[2], p.cols}}};
  std::sort(d.begin(), d.end());
  int64_t need = 1;  // each stride must clear the dims nested inside it
  for (auto [stride, size] : d) {
    if (size == 1) continue;
    if (stride < need) return false;
    need = stride * size;
  }
  return true;
}

template <typename E>
void pack(const E* src, const Operand& p, E* dst) {
  for (int64_t b = 0; b < p.batch; b++)
    for (int64_t i = 0; i < p.rows; i++)
      for (int64_t j = 0; j < p.cols; j++)
        *dst++ = src[b * p.s[0] + i * p.s[1] + j * p.s[2]];
}

void packOperand(const void* src, const Operand& p, size_t item, void* dst) {
  if (item == 2) pack(static_cast<const uint16_t*>(src), p, static_cast<uint16_t*>(dst));
  else pack(static_cast<const uint32_t*>(src), p, static_cast<uint32_t*>(dst));
}

Operand packedOf(const Operand& p) {
  return Operand{p.batch, p.rows, p.cols, {p.rows * p.cols, p.cols, 1}};
}

struct MatmulEntry {
  dnnl::matmul prim;
  dnnl::memory a, b, out, scratch;
  std::unordered_map<int, dnnl::memory> args;
  size_t scratchBytes = 0;
};

dnn::PrimitiveCache<MatmulEntry>& matmulCache() {
  static auto* c = new dnn::PrimitiveCache<MatmulEntry>();
  return *c;
}

dnnl::memory::desc operandDesc(const Operand& p, dnn::dt t) {
  return dnnl::memory::desc({p.batch, p.rows, p.cols}, t, {p.s[0], p.s[1], p.s[2]});
}

MatmulEntry buildMatmul(const Operand& a, const Operand& b, int64_t outBatch, dnn::dt in,
                        dnn::dt out, bool bias, bool accumulate) {
  using dnnl::memory;
  const int64_t M = a.rows, N = b.cols;
  memory::desc outMd({outBatch, M, N}, out, {M * N, N, 1});
  memory::desc biasMd({1, 1, N}, dnn::dt::f32, {N, N, 1});
  auto aMd = operandDesc(a, in), bMd = operandDesc(b, in);
  dnnl::primitive_attr attr = dnn::userScratchpadAttr();
  if (accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.f);
    attr.set_post_ops(ops);
  }
  auto desc = bias ? dnnl::matmul::desc(aMd, bMd, biasMd, outMd) : dnnl::matmul::desc(aMd, bMd, outMd);
  dnnl::matmul::primitive_desc pd(desc, attr, dnn::engine());
  auto& eng = dnn::engine();
  MatmulEntry e;
  e.prim = dnnl::matmul(pd);
  e.a = memory(aMd, eng, DNNL_MEMORY_NONE);
  e.b = memory(bMd, eng, DNNL_MEMORY_NONE);
  e.out = memory(outMd, eng, DNNL_MEMORY_NONE);
  e.scratch = memory(pd.scratchpad_desc(), eng, DNNL_MEMORY_NONE);
  e.scratchBytes = pd.scratchpad_desc().get_size();
  e.args = {{DNNL_ARG_SRC, e.a}, {DNNL_ARG_WEIGHTS, e.b}, {DNNL_ARG_DST, e.out},
            {DNNL_ARG_SCRATCHPAD, e.scratch}};
  if (bias) e.args[DNNL_ARG_BIAS] = memory(biasMd, eng, DNNL_MEMORY_NONE);
  return e;
}

// K == 0: the product is empty, so out = bias (+ out).
template <typename O, typename B>
void biasOnly(O* out, const B* bias, int64_t rows, int64_t N, bool accumulate) {
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < N; j++) {
      double v = bias ? double(load(bias + j)) : 0.0;
      if (accumulate) v += double(load(out + i * N + j));
      store(out + i * N + j, v);
    }
}

struct MatmulArgs {
  DType d, od;
  int64_t aId, aOff, bId, bOff, biasId, biasOff, outId, outOff, batch, M, N, K;
  std::vector<int64_t> as, bs;
  bool accumulate;
};

void runOnednn(const MatmulArgs& m, const void* aPtr, const void* bPtr, const float* bias,
               void* outPtr) {
  const size_t item = itemsize(m.d), outItem = itemsize(m.od);
  Operand a{m.as[0] == 0 ? 1 : m.batch, m.M, m.K, {m.as[0], m.as[1], m.as[2]}};
  Operand b{m.bs[0] == 0 ? 1 : m.batch, m.K, m.N, {m.bs[0], m.bs[1], m.bs[2]}};
  canonicalize(a);
  canonicalize(b);
  const bool packA = !gemmable(a), packB = !gemmable(b);
  Operand ua = a, ub = b;  // the caller's layouts, for packing
  if (packA) a = packedOf(a);
  if (packB) b = packedOf(b);

  // A shared B over row-contiguous batches of A is one big matmul: fold batch into M.
  int64_t outBatch = m.batch, repeat = 1;
  if (m.batch > 1 && b.batch == 1 && a.batch == m.batch && a.s[2] == 1 && a.s[0] == m.M * a.s[1]) {
    a = Operand{1, m.batch * m.M, m.K, {0, a.s[1], 1}};
    canonicalize(a);
    outBatch = 1;
  } else if (m.batch > 1 && a.batch == 1 && b.batch == 1) {
    outBatch = 1;  // both broadcast: one product per output batch, dst shifted each time
    repeat = m.batch;
  }

  const dnn::dt in = dnn::toDnnl(m.d), out = dnn::toDnnl(m.od);
  dnn::Key key(kMatmulFamily);
  key.add(int64_t(m.d)).add(int64_t(m.od)).add(outBatch).add(a.rows).add(b.cols).add(m.K);
  key.add(a.batch).add(a.s, a.s + 3).add(b.batch).add(b.s, b.s + 3);
  key.add(bias != nullptr).add(m.accumulate);

  std::lock_guard<std::mutex> lock(dnn::execMutex());
  auto e = matmulCache().get(key, [&] {
    try {
      return buildMatmul(a, b, outBatch, in, out, bias != nullptr, m.accumulate);
    } catch (const dnnl::error& err) {
      throw Error(cat("matmul: oneDNN refused ", dnn::dtypeName(m.d), " [", outBatch, ", ", a.rows, ", ",
                      m.K, "] @ [", b.batch, ", ", m.K, ", ", b.cols, "] with strides A [", a.s[0], ", ",
                      a.s[1], ", ", a.s[2], "] B [", b.s[0], ", ", b.s[1], ", ", b.s[2], "]: ", err.what()));
    }
  });
  auto pieces = dnn::arena().carve({packA ? size_t(a.batch * a.rows * a.cols) * item : 0,
                                    packB ? size_t(b.batch * b.rows * b.cols) * item : 0,
                                    e->scratchBytes});
  if (packA) packOperand(aPtr, ua, item, pieces[0]);
  if (packB) packOperand(bPtr, ub, item, pieces[1]);
  e->a.set_data_handle(packA ? pieces[0] : const_cast<void*>(aPtr));
  e->b.set_data_handle(packB ? pieces[1] : const_cast<void*>(bPtr));
  e->scratch.set_data_handle(pieces[2]);
  if (bias) e->args[DNNL_ARG_BIAS].set_data_handle(const_cast<float*>(bias));
  for (int64_t r = 0; r < repeat; r++) {
    e->out.set_data_handle(static_cast<char*>(outPtr) + r * m.M * m.N * outItem);
    e->prim.execute(dnn::stream(), e->args);
  }
  dnn::stream().wait();
}

int64_t spanOf(int64_t batch, int64_t rows, int64_t cols, const std::vector<int64_t>& s) {
  const int64_t dims[3] = {batch, rows, cols};
  return stridedSpan(dims, s.data(), 3);
}

// matmul(dtype, aId, aOff, aStrides, bId, bOff, bStrides, biasId, biasOff, outDtype, outId,
//        outOff, batch, M, N, K, accumulate)
// out[b] (contiguous [batch, M, N]) = A[b] @ B[b] (+ bias[N]) (+ out). Strides are elements.
Napi::Value Matmul(const Napi::CallbackInfo& info) {
  MatmulArgs m;
  m.d = toDType(int(argInt(info, 0)));
  m.aId = argInt(info, 1), m.aOff = argInt(info, 2), m.as = argInts(info, 3);
  m.bId = argInt(info, 4), m.bOff = argInt(info, 5), m.bs = argInts(info, 6);
  m.biasId = argInt(info, 7), m.biasOff = argInt(info, 8);
  m.od = toDType(int(argInt(info, 9)));
  m.outId = argInt(info, 10), m.outOff = argInt(info, 11);
  m.batch = argInt(info, 12), m.M = argInt(info, 13), m.N = argInt(info, 14), m.K = argInt(info, 15);
  m.accumulate = argBool(info, 16);

  MT_CHECK(m.d == DType::F32 || m.d == DType::BF16 || m.d == DType::F64, "matmul: dtype ",
           dnn::dtypeName(m.d), " is not supported (f32, bf16, f64)");
  const bool outOk = m.d == DType::BF16 ? (m.od == DType::F32 || m.od == DType::BF16) : m.od == m.d;
  MT_CHECK(outOk, "matmul: inputs of dtype ", dnn::dtypeName(m.d), " cannot produce ", dnn::dtypeName(m.od),
           m.d == DType::BF16 ? " (bf16 gives f32 or bf16)" : "");
  MT_CHECK(m.as.size() == 3 && m.bs.size() == 3, "matmul: strides must be [batch, row, col], got ",
           m.as.size(), " and ", m.bs.size(), " values");
  MT_CHECK(m.batch >= 0 && m.M >= 0 && m.N >= 0 && m.K >= 0, "matmul: negative size in batch ",
           m.batch, " M ", m.M, " N ", m.N, " K ", m.K);
  for (int k = 0; k < 3; k++)
    MT_CHECK(m.as[k] >= 0 && m.bs[k] >= 0, "matmul: negative strides are not supported (A [",
             m.as[0], ", ", m.as[1], ", ", m.as[2], "], B [", m.bs[0], ", ", m.bs[1], ", ", m.bs[2], "])");

  const size_t item = itemsize(m.d), outItem = itemsize(m.od);
  const DType biasType = m.d == DType::F64 ? DType::F64 : DType::F32;
  const int64_t aSpan = spanOf(m.batch, m.M, m.K, m.as), bSpan = spanOf(m.batch, m.K, m.N, m.bs);
  const int64_t outN = m.batch * m.M * m.N;
  const char* op = "matmul";
  const void* a = dnn::operandPtr(op, "A", m.aId, m.aOff, aSpan, item, {m.batch, m.M, m.K}, m.as);
  const void* b = dnn::operandPtr(op, "B", m.bId, m.bOff, bSpan, item, {m.batch, m.K, m.N}, m.bs);
  void* out = dnn::operandPtr(op, "out", m.outId, m.outOff, outN, outItem, {m.batch, m.M, m.N},
                              {m.M * m.N, m.N, 1});
  const void* bias = m.biasId ? dnn::operandPtr(op, "bias", m.biasId, m.biasOff, m.N,
                                                itemsize(biasType), {m.N}, {1})
                              : nullptr;
  if (outN == 0) return info.Env().Undefined();

  if (m.K == 0) {
    const int64_t rows = m.batch * m.M;
    if (m.od == DType::F64) biasOnly(static_cast<double*>(out), static_cast<const double*>(bias), rows, m.N, m.accumulate);
    else if (m.od == DType::F32) biasOnly(static_cast<float*>(out), static_cast<const float*>(bias), rows, m.N, m.accumulate);
    else biasOnly(static_cast<bf16*>(out), static_cast<const float*>(bias), rows, m.N, m.accumulate);
  } else if (m.d == DType::F64) {
    ref::matmul(static_cast<const double*>(a), m.as.data(), static_cast<const double*>(b), m.bs.data(),
                static_cast<const double*>(bias), static_cast<double*>(out), m.batch, m.M, m.N, m.K,
                m.accumulate);
  } else {
    runOnednn(m, a, b, static_cast<const float*>(bias), out);
  }
  return info.Env().Undefined();
}

// benchOnednnMatmul(dtypeCode, M, N, K, iters) → median seconds of one oneDNN matmul executed
// directly on preallocated row-major buffers (f32 → f32, bf16 → f32): the peer our path is
// measured against.
Napi::Value BenchOnednnMatmul(const Napi::CallbackInfo& info) {
  using dnnl::memory;
  DType d = toDType(int(argInt(info, 0)));
  int64_t M = argInt(info, 1), N = argInt(info, 2), K = argInt(info, 3), iters = argInt(info, 4);
  MT_CHECK(d == DType::F32 || d == DType::BF16, "benchOnednnMatmul: dtype ", dnn::dtypeName(d),
           " is not supported (f32, bf16)");
  MT_CHECK(M > 0 && N > 0 && K > 0 && iters > 0, "benchOnednnMatmul: sizes and iters must be positive");
  auto& eng = dnn::engine();
  memory::desc aMd({M, K}, dnn::toDnnl(d), memory::format_tag::ab);
  memory::desc bMd({K, N}, dnn::toDnnl(d), memory::format_tag::ab);
  memory::desc cMd({M, N}, dnn::dt::f32, memory::format_tag::ab);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(aMd, bMd, cMd), eng);
  dnnl::matmul prim(pd);
  memory a(aMd, eng), b(bMd, eng), c(cMd, eng);
  // Non-trivial inputs: all-zero pages could flatter the timing.
  for (auto* m : {&a, &b}) {
    auto* p = static_cast<uint8_t*>(m->get_data_handle());
    size_t n = m->get_desc().get_size();
    for (size_t i = 0; i < n; i++) p[i] = uint8_t(0x3c + (i * 7) % 3);
  }
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}};
  std::lock_guard<std::mutex> lock(dnn::execMutex());
  double s = dnn::medianSeconds(iters, [&] {
    prim.execute(dnn::stream(), args);
    dnn::stream().wait();
  });
  return Napi::Number::New(info.Env(), s);
}

}  // namespace

void registerMatmul(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "matmul", Matmul);
  MT_EXPORT(exports, "benchOnednnMatmul", BenchOnednnMatmul);
}

}  // namespace mt
