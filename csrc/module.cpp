// The Python module `sea_kernels._C` (built by setup.py only), the `cpp` backend of
// docs/design.md §5. Importing it loads this library, whose static initialisers in sea_cpu.cpp
// register torch.ops.sea_kernels.sea_fwd_cpu.
#include <pybind11/pybind11.h>

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "SeA fused CPU kernel: registers torch.ops.sea_kernels.sea_fwd_cpu";
}
