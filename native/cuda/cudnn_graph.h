// The enum values of cuDNN 9's graph (backend) API that meshtrain uses, from cudnn_graph.h, so no
// cuDNN header is needed to build. Checked against two independent copies of cuDNN 9's header
// (C and Rust bindings; they agree): attribute names, attribute types, descriptor types, data
// types, pointwise modes, reduction operators, heuristic modes. Shared by attention_cudnn.cc and
// the emulated cuDNN (emu/cudnn_backend.cc), so a wrong value here would pass on the emulator:
// only a GPU run proves them.
#pragma once
#include <cstdint>

namespace mt::dnn9g {

using Desc = void*;

// cudnnBackendDescriptorType_t
enum DescType : int {
  kPointwiseDesc = 0,
  kEngineCfgDesc = 3,
  kEngineHeurDesc = 4,
  kExecutionPlanDesc = 5,
  kOpPointwiseDesc = 13,
  kOpGraphDesc = 15,
  kVariantPackDesc = 16,
  kTensorDesc = 17,
  kMatmulDesc = 18,
  kOpMatmulDesc = 19,
  kReductionDesc = 21,
  kOpReductionDesc = 22,
  kOpReshapeDesc = 31,
};

// cudnnBackendAttributeType_t
enum AttrType : int {
  kTypeHandle = 0,
  kTypeDataType = 1,
  kTypeBoolean = 2,
  kTypeInt64 = 3,
  kTypeFloat = 4,
  kTypeDouble = 5,
  kTypeVoidPtr = 6,
  kTypeHeurMode = 8,
  kTypePointwiseMode = 14,
  kTypeBackendDesc = 15,
  kTypeReductionOp = 18,
};

// cudnnBackendAttributeName_t
enum AttrName : int {
  kPointwiseMode = 0,
  kPointwiseMathPrec = 1,
  kPointwiseAxis = 9,
  kHeurMode = 200,
  kHeurOpGraph = 201,
  kHeurResults = 202,
  kPlanHandle = 400,
  kPlanEngineCfg = 401,
  kPlanWorkspaceSize = 402,
  kOpPointwisePwDesc = 750,
  kOpPointwiseX = 751,
  kOpPointwiseB = 752,
  kOpPointwiseY = 753,
  kOpPointwiseAlpha1 = 754,
  kOpPointwiseAlpha2 = 755,
  kOpPointwiseT = 758,
  kOpGraphHandle = 800,
  kOpGraphOps = 801,
  kTensorByteAlignment = 900,
  kTensorDataType = 901,
  kTensorDims = 902,
  kTensorStrides = 903,
  kTensorUid = 906,
  kTensorIsVirtual = 907,
  kTensorIsByValue = 908,
  kVariantPackUids = 1000,
  kVariantPackPointers = 1001,
  kVariantPackWorkspace = 1003,
  kMatmulCompType = 1500,
  kOpMatmulA = 1520,
  kOpMatmulB = 1521,
  kOpMatmulC = 1522,
  kOpMatmulDescriptor = 1523,
  kReductionOperator = 1600,
  kReductionCompType = 1601,
  kOpReductionX = 1610,
  kOpReductionY = 1611,
  kOpReductionDescriptor = 1612,
  kOpReshapeX = 2200,
  kOpReshapeY = 2201,
};

// cudnnDataType_t (a 4-byte enum element, as every enum-typed attribute; BOOLEAN elements are bool)
enum DataType : int { kFloat = 0, kHalf = 2, kInt32 = 4, kBfloat16 = 9, kBoolean = 11 };

// cudnnPointwiseMode_t
enum PointwiseMode : int {
  kAdd = 0,
  kMul = 1,
  kDiv = 6,
  kSub = 9,
  kExp = 13,
  kLog = 15,
  kIdentity = 21,
  kCmpGe = 303,
  kGenIndex = 501,
  kBinarySelect = 601,
};

// cudnnReduceTensorOp_t
enum ReduceOp : int { kReduceAdd = 0, kReduceMax = 3 };

// cudnnBackendHeurMode_t
enum HeurMode : int { kHeurModeA = 3 };

}  // namespace mt::dnn9g
