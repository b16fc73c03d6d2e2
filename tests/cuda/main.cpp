// Main of the CUDA tests: without a usable GPU every test exits with 77, which ctest reports as
// skipped (SKIP_RETURN_CODE), so machines without a GPU stay green while compiling all CUDA code.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <fmt/format.h>

#include <string_view>

#include "cuda/backend.hpp"

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i) listing |= std::string_view(argv[i]).rfind("--list", 0) == 0;
  if (!listing && !dssm::cuda::available()) {
    fmt::print("skipped: no CUDA device is visible on this machine\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
