// The reference cuDNN's cudnnBackendExecute (test tool): checks the variant pack against the plan's
// graph (exactly its non-virtual uids, pointers aligned as declared, a workspace, which it
// overwrites), then runs the operations in dependency order, every tensor held densely in double
// and rounded to its declared data type after each operation (f32, bf16, f16; virtual ones too, so
// P is rounded to bf16/f16 before P·V as the fused kernels do), non-virtual outputs written through
// their strides; RESHAPE is a view: Y's element at Y's strides reads the memory X's strides laid
// out. By-value scalars are read at the call. On a capturing stream the run is recorded (the
// runtime's hook) and happens at each replay.
#include <algorithm>
#include <cmath>
#include <map>
#include <vector>
#include "cudnn_common.h"
#include "cudnn_graph_desc.h"

namespace {

using namespace mtdnn;
using namespace mtdnn::graph;

double rounded(int dt, double v) {
  if (dt == kFloat) return double(float(v));
  if (dt == kBf16) return bf16ToFloat(floatToBf16(float(v)));
  if (dt == kHalf) return f16ToFloat(floatToF16(float(v)));
  return v;
}
double load(int dt, const void* p, int64_t i) {
  switch (dt) {
    case kFloat: return static_cast<const float*>(p)[i];
    case kHalf: return f16ToFloat(static_cast<const uint16_t*>(p)[i]);
    case kBf16: return bf16ToFloat(static_cast<const uint16_t*>(p)[i]);
    case 4: return static_cast<const int32_t*>(p)[i];
    default: return static_cast<const uint8_t*>(p)[i];
  }
}
void store(int dt, void* p, int64_t i, double v) {
  switch (dt) {
    case kFloat: static_cast<float*>(p)[i] = float(v); break;
    case kHalf: static_cast<uint16_t*>(p)[i] = floatToF16(float(v)); break;
    case kBf16: static_cast<uint16_t*>(p)[i] = floatToBf16(float(v)); break;
    case 4: static_cast<int32_t*>(p)[i] = int32_t(v); break;
    default: static_cast<uint8_t*>(p)[i] = v != 0;
  }
}

// Row-major index -> multi-index over dims.
void unravel(int64_t i, const std::vector<int64_t>& dims, int64_t* idx) {
  for (size_t k = dims.size(); k-- > 0;) idx[k] = i % dims[k], i /= dims[k];
}
int64_t offsetOf(const int64_t* idx, const std::vector<int64_t>& strides) {
  int64_t o = 0;
  for (size_t k = 0; k < strides.size(); k++) o += idx[k] * strides[k];
  return o;
}
// A broadcast operand's row-major index for the output multi-index.
int64_t bcastIndex(const int64_t* idx, const std::vector<int64_t>& dims) {
  int64_t i = 0;
  for (size_t k = 0; k < dims.size(); k++) i = i * dims[k] + (dims[k] == 1 ? 0 : idx[k]);
  return i;
}

struct Run {
  Desc* graph;
  std::map<int64_t, void*> ptrs;
  std::map<int64_t, double> scalars;  // by-value tensors, read at execute
};

void runGraph(const Run& r) {
  std::map<const Desc*, std::vector<double>> val;
  auto get = [&](const Desc* t) -> const std::vector<double>& {
    auto it = val.find(t);
    if (it != val.end()) return it->second;
    std::vector<double>& v = val[t];
    v.resize(size_t(count(*t)));
    if (t->byValue) {
      v[0] = r.scalars.at(t->uid);
      return v;
    }
    int64_t idx[8];
    for (int64_t i = 0; i < int64_t(v.size()); i++) unravel(i, t->dims, idx), v[size_t(i)] = load(t->dt, r.ptrs.at(t->uid), offsetOf(idx, t->strides));
    return v;
  };
  for (const Desc* o : r.graph->order) {
    const Desc* y = outputOf(*o);
    std::vector<double> out(size_t(count(*y)));
    int64_t idx[8];
    if (o->type == g::kOpPointwiseDesc) {
      const Desc& pw = *descOf(*o, g::kOpPointwisePwDesc);
      const int mode = one<int>(pw, g::kPointwiseMode, -1);
      const int64_t axis = one<int64_t>(pw, g::kPointwiseAxis, 0);
      const Desc *x = descOf(*o, g::kOpPointwiseX), *b = descOf(*o, g::kOpPointwiseB), *t = descOf(*o, g::kOpPointwiseT);
      const std::vector<double>& xv = get(x);
      const std::vector<double>* bv = b ? &get(b) : nullptr;
      const std::vector<double>* tv = t ? &get(t) : nullptr;
      for (int64_t i = 0; i < int64_t(out.size()); i++) {
        unravel(i, y->dims, idx);
        const double a = xv[size_t(bcastIndex(idx, x->dims))];
        const double c = bv ? (*bv)[size_t(bcastIndex(idx, b->dims))] : 0;
        double v;
        switch (mode) {
          case g::kAdd: v = a + c; break;
          case g::kMul: v = a * c; break;
          case g::kDiv: v = a / c; break;
          case g::kSub: v = a - c; break;
          case g::kExp: v = std::exp(a); break;
          case g::kLog: v = std::log(a); break;
          case g::kIdentity: v = a; break;
          case g::kCmpGe: v = a >= c; break;
          case g::kGenIndex: v = double(idx[axis]); break;
          case g::kBinarySelect: v = (*tv)[size_t(bcastIndex(idx, t->dims))] != 0 ? a : c; break;
          default: v = std::nan("");
        }
        out[size_t(i)] = v;
      }
    } else if (o->type == g::kOpMatmulDesc) {
      const Desc *a = descOf(*o, g::kOpMatmulA), *b = descOf(*o, g::kOpMatmulB);
      const std::vector<double>&av = get(a), &bv = get(b);
      const size_t n = y->dims.size();
      const int64_t K = a->dims[n - 1];
      int64_t ia[8], ib[8];
      for (int64_t i = 0; i < int64_t(out.size()); i++) {
        unravel(i, y->dims, idx);
        std::copy(idx, idx + n, ia), std::copy(idx, idx + n, ib);
        double acc = 0;
        for (int64_t kk = 0; kk < K; kk++) {
          ia[n - 1] = kk, ib[n - 2] = kk;
          acc += av[size_t(bcastIndex(ia, a->dims))] * bv[size_t(bcastIndex(ib, b->dims))];
        }
        out[size_t(i)] = acc;
      }
    } else if (o->type == g::kOpReductionDesc) {
      const Desc* x = descOf(*o, g::kOpReductionX);
      const int op = one<int>(*descOf(*o, g::kOpReductionDescriptor), g::kReductionOperator, -1);
      std::fill(out.begin(), out.end(), op == g::kReduceMax ? -INFINITY : 0.0);
      const std::vector<double>& xv = get(x);
      for (int64_t i = 0; i < int64_t(xv.size()); i++) {
        unravel(i, x->dims, idx);
        double& acc = out[size_t(bcastIndex(idx, y->dims))];
        acc = op == g::kReduceMax ? std::max(acc, xv[size_t(i)]) : acc + xv[size_t(i)];
      }
    } else {  // reshape: the memory X's strides lay out, read at Y's strides
      const Desc* x = descOf(*o, g::kOpReshapeX);
      const std::vector<double>& xv = get(x);
      std::map<int64_t, double> mem;
      for (int64_t i = 0; i < int64_t(xv.size()); i++) unravel(i, x->dims, idx), mem[offsetOf(idx, x->strides)] = xv[size_t(i)];
      for (int64_t i = 0; i < int64_t(out.size()); i++) {
        unravel(i, y->dims, idx);
        auto it = mem.find(offsetOf(idx, y->strides));
        out[size_t(i)] = it == mem.end() ? std::nan("") : it->second;
      }
    }
    for (double& v : out) v = rounded(y->dt, v);
    if (!y->isVirtual)
      for (int64_t i = 0; i < int64_t(out.size()); i++) unravel(i, y->dims, idx), store(y->dt, r.ptrs.at(y->uid), offsetOf(idx, y->strides), out[size_t(i)]);
    val[y] = std::move(out);
  }
}

// The graph's non-virtual tensors by uid.
std::map<int64_t, const Desc*> ioTensors(const Desc& gr) {
  std::map<int64_t, const Desc*> m;
  for (const Desc* o : gr.order) {
    for (const Desc* t : inputsOf(*o))
      if (!t->isVirtual) m[t->uid] = t;
    if (const Desc* y = outputOf(*o); !y->isVirtual) m[y->uid] = y;
  }
  return m;
}

}  // namespace

extern "C" {

int cudnnBackendExecute(void* hp, void* planp, void* packp) {
  const Handle* h = static_cast<const Handle*>(hp);
  const Desc *plan = static_cast<const Desc*>(planp), *pack = static_cast<const Desc*>(packp);
  if (!h || !plan || !pack || !plan->final || !pack->final || plan->type != g::kExecutionPlanDesc || pack->type != g::kVariantPackDesc)
    return fail(kBadParam, "cudnnBackendExecute: a null or unfinalized handle, plan or variant pack");
  Run r{plan->graph, {}, {}};
  const auto io = ioTensors(*plan->graph);
  for (const auto& [uid, ptr] : pack->ptrs)
    if (!io.count(uid)) return fail(kBadParam, "cudnnBackendExecute: uid " + std::to_string(uid) + " is not a tensor of the graph");
  for (const auto& [uid, t] : io) {
    auto it = pack->ptrs.find(uid);
    if (it == pack->ptrs.end() || !it->second) return fail(kBadParam, "cudnnBackendExecute: no pointer for uid " + std::to_string(uid));
    if (t->byValue) {
      r.scalars[uid] = load(t->dt, it->second, 0);  // by value: read now, as cuDNN passes it to the kernels
    } else {
      if (reinterpret_cast<uintptr_t>(it->second) % uint64_t(t->align))
        return fail(kBadParam, "cudnnBackendExecute: uid " + std::to_string(uid) + " not aligned to its byte alignment");
      r.ptrs[uid] = it->second;
    }
  }
  if (!pack->ws) return fail(kBadParam, "cudnnBackendExecute: the plan needs a workspace");
  struct Call {
    Run r;
    void* ws;
  };
  auto* call = new Call{r, pack->ws};
  auto run = [](void* c) {
    const Call& k = *static_cast<Call*>(c);
    if (skipWork()) return;
    std::memset(k.ws, 0xab, kWorkspace);  // a workspace that is not writable device memory crashes here
    runGraph(k.r);
  };
  if (captureHook && captureHook(h->stream, run, call, [](void* c) { delete static_cast<Call*>(c); })) return kSuccess;
  run(call);
  delete call;
  return kSuccess;
}

}  // extern "C"
