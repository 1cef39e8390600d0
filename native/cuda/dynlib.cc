#include "cuda/dynlib.h"

#include <dlfcn.h>
#include <glob.h>
#include <sys/stat.h>
#include <cstdlib>
#include <sstream>
#include "util/check.h"

namespace mt {
namespace {

bool isDir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void addGlob(const std::string& pattern, std::vector<std::string>* out) {
  glob_t g;
  if (glob(pattern.c_str(), 0, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; i++)
      if (isDir(g.gl_pathv[i])) out->push_back(g.gl_pathv[i]);
  }
  globfree(&g);
}

}  // namespace

std::vector<std::string> cudaLibSearchDirs() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("MESHTRAIN_CUDA_LIB_PATH")) {
    std::stringstream s(env);
    std::string d;
    while (std::getline(s, d, ':'))
      if (!d.empty()) dirs.push_back(d);
  }
  // Python installs that may hold NVIDIA's wheels: a virtual environment first (the GPU machines
  // run /opt/<name>/.venv), then the system's and the user's site-packages.
  std::vector<std::string> sites;
  if (const char* venv = std::getenv("VIRTUAL_ENV")) addGlob(std::string(venv) + "/lib/python3*/site-packages", &sites);
  addGlob("/opt/*/.venv/lib/python3*/site-packages", &sites);
  addGlob("/usr/local/lib/python3*/dist-packages", &sites);
  addGlob("/usr/local/lib/python3*/site-packages", &sites);
  addGlob("/usr/lib/python3*/dist-packages", &sites);
  addGlob("/usr/lib/python3/dist-packages", &sites);
  if (const char* home = std::getenv("HOME")) addGlob(std::string(home) + "/.local/lib/python3*/site-packages", &sites);
  for (const auto& site : sites) {
    addGlob(site + "/nvidia/*/lib", &dirs);     // nvidia/nccl/lib, nvidia/cublas/lib
    addGlob(site + "/nvidia/cu*/lib", &dirs);   // CUDA 13 wheels: nvidia/cu13/lib
  }
  dirs.push_back("/usr/local/cuda/lib64");
  return dirs;
}

DynLib openCudaLib(const char* what, const std::vector<std::string>& names) {
  DynLib lib;
  std::vector<std::string> dirs = cudaLibSearchDirs();
  std::string lastError;
  for (const auto& dir : dirs)
    for (const auto& name : names) {
      std::string p = dir + "/" + name;
      struct stat st;
      if (stat(p.c_str(), &st) != 0) continue;
      // RTLD_LOCAL: their symbols stay out of the global namespace, where another copy (a Python
      // extension's, say) may already live.
      if (void* h = dlopen(p.c_str(), RTLD_NOW | RTLD_LOCAL)) {
        lib.handle = h;
        lib.path = p;
        return lib;
      }
      lastError = dlerror();
    }
  for (const auto& name : names) {
    if (void* h = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL)) {
      lib.handle = h;
      // Where the default search found it, for the report.
      char origin[4096] = {0};
      lib.path = dlinfo(h, RTLD_DI_ORIGIN, origin) == 0 && origin[0] ? std::string(origin) + "/" + name : name;
      return lib;
    }
    lastError = dlerror();
  }
  std::ostringstream msg;
  msg << "missing " << what << " (" << names[0] << "): not in MESHTRAIN_CUDA_LIB_PATH, the Python wheels' nvidia/*/lib, "
      << "/usr/local/cuda/lib64 or the loader's path";
  if (!lastError.empty()) msg << "; last error: " << lastError;
  msg << ". Set MESHTRAIN_CUDA_LIB_PATH to the folder that holds it";
  lib.error = msg.str();
  return lib;
}

void* cudaLibSymbol(const DynLib& lib, const char* what, const char* symbol) {
  void* p = dlsym(lib.handle, symbol);
  MT_CHECK(p, what, " at ", lib.path, " lacks the function ", symbol, " (too old a version?)");
  return p;
}

}  // namespace mt
