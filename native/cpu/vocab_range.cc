// Vocabulary-slice indexing for vocab-parallel embedding and cross-entropy: which ids fall in this
// rank's rows [start, start + Vl) of a V-row vocabulary, as a local i32 index and float masks, with
// out-of-range ids reported. The reference of native/cuda/vocab_range.cu, which does the same on
// the device so the ids never travel to the host.
#include <cstdint>
#include <string>
#include "cpu/indices.h"
#include "tensor/storage.h"
#include "tensor/vocab_range.h"
#include "util/args.h"
#include "util/parallel.h"

namespace mt {
namespace {

template <typename I, typename M>
void vocabRangeKernel(const I* ids, int64_t n, const VocabSlice& s, int32_t* local, M* here, M* valid) {
  parallelFor(n, 4, [&](int64_t i) {
    const VocabEntry e = vocabEntry(int64_t(ids[i]), s);
    local[i] = e.local;
    store(here + i, e.here ? 1.0 : 0.0);
    if (valid) store(valid + i, e.valid ? 1.0 : 0.0);
  });
}

// vocabRange(idDtype, idsId, idsOff, n, start, Vl, V, ignore, localId, maskDtype, hereId, validId, flagId)
// Writes local (i32 [n]), here and valid (maskDtype [n]; validId 0: none) and, when flagId is not 0,
// the flag (i64 [1]: 0, or n - the first bad position) as the CUDA kernel does. Returns the first
// position of an id outside [0, V) that is not `ignore`, or -1.
Napi::Value VocabRange(const Napi::CallbackInfo& info) {
  const char* op = "vocabRange";
  const DType id = toDType(int(argInt(info, 0)));
  const int64_t idsId = argInt(info, 1), idsOff = argInt(info, 2), n = argInt(info, 3);
  const VocabSlice s{argInt(info, 4), argInt(info, 5), argInt(info, 6), argInt(info, 7)};
  const int64_t localId = argInt(info, 8);
  const DType md = toDType(int(argInt(info, 9)));
  const int64_t hereId = argInt(info, 10), validId = argInt(info, 11), flagId = argInt(info, 12);
  const std::string problem = vocabSliceProblem(n, s);
  MT_CHECK(problem.empty(), op, ": ", problem);
  int64_t bad = -1;
  MT_DISPATCH_INDEX(id, op, {
    const I* ids = dataPtr<I>(idsId, idsOff, n);
    int32_t* local = dataPtr<int32_t>(localId, 0, n);
    MT_DISPATCH_FLOAT(md, op, {
      vocabRangeKernel<I, T>(ids, n, s, local, dataPtr<T>(hereId, 0, n), validId ? dataPtr<T>(validId, 0, n) : nullptr);
    });
    bad = firstOutOfRange(ids, n, s.V, s.ignore);
  });
  if (flagId) *dataPtr<int64_t>(flagId, 0, 1) = bad < 0 ? 0 : n - bad;
  return Napi::Number::New(info.Env(), double(bad));
}

}  // namespace

void registerVocabRange(Napi::Env env, Napi::Object exports) {
  MT_EXPORT(exports, "vocabRange", VocabRange);
}

}  // namespace mt
