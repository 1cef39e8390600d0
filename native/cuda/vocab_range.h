// Launcher of the device-side vocabulary-slice indexing (vocab_range.cu). Plain declarations, no
// CUDA types. The flag is one device u64, as index_check.h's: 0, or n - (first bad position).
#pragma once
#include <cstdint>
#include "tensor/vocab_range.h"

namespace mt {

// For each of the n ids (i32/i64, idDtype): local (i32), here and valid (maskDtype; valid may be
// null) by vocabEntry; ids outside [0, V) that are not s.ignore raise the flag, which is reset first.
void cudaVocabRange(int dev, int idDtype, const void* ids, int64_t n, const VocabSlice& s, int32_t* local,
                    int maskDtype, void* here, void* valid, void* flag);

}  // namespace mt
