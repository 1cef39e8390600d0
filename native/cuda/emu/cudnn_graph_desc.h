// The reference cuDNN's graph-API descriptors (test tool), shared by emu/cudnn_backend.cc (the
// descriptor calls and their checks) and emu/cudnn_graph_run.cc (cudnnBackendExecute: the graph
// run as written). What each file checks and computes is said at its top.
#pragma once
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>
#include "cuda/cudnn_graph.h"

namespace mtdnn::graph {

namespace g = mt::dnn9g;

struct Desc;

struct Attr {
  int type = -1;
  std::vector<uint8_t> bytes;
  int64_t count = 0;
};

struct Desc {
  int type;
  bool final = false;
  std::map<int, Attr> attrs;
  // Tensors (at finalize)
  int64_t uid = -1, align = 0;
  int dt = -1;
  std::vector<int64_t> dims, strides;
  bool isVirtual = false, byValue = false;
  // Engine configs (filled by the heuristics) and plans
  Desc* graph = nullptr;
  // Graphs: operations in dependency order
  std::vector<Desc*> order;
  // Variant packs
  std::map<int64_t, void*> ptrs;
  void* ws = nullptr;
};

// What every plan reports as its workspace; execution overwrites that much.
constexpr int64_t kWorkspace = 4096;

template <typename T>
std::vector<T> values(const Desc& d, int name) {
  auto it = d.attrs.find(name);
  std::vector<T> out;
  if (it == d.attrs.end()) return out;
  for (int64_t i = 0; i < it->second.count; i++) {  // element by element: vector<bool> has no data()
    T v;
    std::memcpy(&v, it->second.bytes.data() + size_t(i) * sizeof(T), sizeof(T));
    out.push_back(v);
  }
  return out;
}
template <typename T>
T one(const Desc& d, int name, T dflt) {
  auto v = values<T>(d, name);
  return v.empty() ? dflt : v[0];
}
inline Desc* descOf(const Desc& d, int name) { return one<Desc*>(d, name, nullptr); }
inline bool has(const Desc& d, int name) { return d.attrs.count(name) > 0; }

inline std::string need(const Desc& d, std::initializer_list<int> names) {
  for (int n : names)
    if (!has(d, n)) return "attribute " + std::to_string(n) + " is required";
  return "";
}

inline int64_t count(const Desc& t) {
  int64_t n = 1;
  for (int64_t x : t.dims) n *= x;
  return n;
}

// An operation's input tensors and its output.
inline std::vector<Desc*> inputsOf(const Desc& o) {
  std::vector<Desc*> in;
  for (int n : {g::kOpPointwiseX, g::kOpPointwiseB, g::kOpPointwiseT, g::kOpMatmulA, g::kOpMatmulB, g::kOpReductionX, g::kOpReshapeX})
    if (Desc* d = descOf(o, n)) in.push_back(d);
  return in;
}
inline Desc* outputOf(const Desc& o) {
  for (int n : {g::kOpPointwiseY, g::kOpMatmulC, g::kOpReductionY, g::kOpReshapeY})
    if (Desc* d = descOf(o, n)) return d;
  return nullptr;
}

}  // namespace mtdnn::graph
