# The emulated-device build (test tool): -DMESHTRAIN_CUDA_EMU=ON. native/cuda/*.cu compile as C++
# with kernel.h force-included and emu/include/ shadowing NVIDIA's headers; the emulated cudart
# links into the addon; a reference cuBLASLt builds as <build>/emu-lib/libcublasLt.so.13 and a
# reference cuDNN as <build>/emu-lib/libcudnn.so.9, found through MESHTRAIN_CUDA_LIB_PATH like the
# real ones.
set(MESHTRAIN_EMU_DIR ${CMAKE_SOURCE_DIR}/native/cuda/emu)
file(GLOB MESHTRAIN_EMU_SOURCES CONFIGURE_DEPENDS ${MESHTRAIN_EMU_DIR}/*.cc)
list(FILTER MESHTRAIN_EMU_SOURCES EXCLUDE REGEX "/(cublaslt|cudnn)[^/]*\\.cc$")
# -O1 for the whole addon: it runs small test tensors, and CI builds it after the main addon.
add_compile_options(-O1)
# checks.cu, graph_checks.cu, cudnn_graph_checks.cu: the emulator's self-checks (cudaEmuChecks, cudaEmuGraphChecks,
# cudaEmuCudnnChecks), compiled like the kernels.
list(APPEND MESHTRAIN_CUDA_SOURCES ${MESHTRAIN_EMU_DIR}/checks.cu ${MESHTRAIN_EMU_DIR}/graph_checks.cu
  ${MESHTRAIN_EMU_DIR}/cudnn_graph_checks.cu)
set_source_files_properties(${MESHTRAIN_CUDA_SOURCES} PROPERTIES LANGUAGE CXX
  COMPILE_OPTIONS "-xc++;-include;${MESHTRAIN_EMU_DIR}/kernel.h;-ffp-contract=off;-Wno-unknown-pragmas")
list(APPEND MESHTRAIN_SOURCES ${MESHTRAIN_CUDA_SOURCES} ${MESHTRAIN_EMU_SOURCES})

function(meshtrain_cuda_emu_target target)
  target_compile_definitions(${target} PRIVATE MESHTRAIN_CUDA=1 MESHTRAIN_CUDA_EMU=1)
  target_include_directories(${target} BEFORE PRIVATE ${MESHTRAIN_EMU_DIR}/include)
  add_library(meshtrain_cublaslt_emu SHARED ${MESHTRAIN_EMU_DIR}/cublaslt.cc)
  set_target_properties(meshtrain_cublaslt_emu PROPERTIES OUTPUT_NAME cublasLt PREFIX "lib" SUFFIX ".so.13"
    LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/emu-lib)
  target_include_directories(meshtrain_cublaslt_emu PRIVATE ${CMAKE_SOURCE_DIR}/native)
  target_compile_options(meshtrain_cublaslt_emu PRIVATE -O2 -ffp-contract=off)
  add_dependencies(${target} meshtrain_cublaslt_emu)
  # The reference cuDNN: the legacy convolution calls conv_cudnn.cc makes (emu/cudnn.cc) and the graph
  # API attention_cudnn.cc uses (emu/cudnn_backend.cc: descriptors and checks; emu/cudnn_graph_run.cc: execution).
  add_library(meshtrain_cudnn_emu SHARED ${MESHTRAIN_EMU_DIR}/cudnn.cc ${MESHTRAIN_EMU_DIR}/cudnn_backend.cc
    ${MESHTRAIN_EMU_DIR}/cudnn_graph_run.cc)
  set_target_properties(meshtrain_cudnn_emu PROPERTIES OUTPUT_NAME cudnn PREFIX "lib" SUFFIX ".so.9"
    LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/emu-lib)
  target_include_directories(meshtrain_cudnn_emu PRIVATE ${CMAKE_SOURCE_DIR}/native)
  target_compile_options(meshtrain_cudnn_emu PRIVATE -O2 -ffp-contract=off)
  add_dependencies(${target} meshtrain_cudnn_emu)
endfunction()
