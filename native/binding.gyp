{
  "variables": {
    "torch_include": "<!(node ../scripts/torch-paths.cjs include)",
    "torch_lib": "<!(node ../scripts/torch-paths.cjs lib)",
    "torch_abi": "<!(node ../scripts/torch-paths.cjs abi)"
  },
  "targets": [
    {
      "target_name": "ferkit_torch",
      "sources": ["src/addon.cc", "src/common.cc", "src/tensor.cc", "src/ops.cc", "src/optim.cc", "src/dist.cc"],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<(torch_include)",
        "<(torch_include)/torch/csrc/api/include"
      ],
      # NAPI_EXPERIMENTAL: tensor handles get a basic finalizer that runs inside the garbage
      # collection; Node defers every other finalizer to the event loop (src/common.cc).
      "defines": ["NAPI_EXPERIMENTAL", "NAPI_CPP_EXCEPTIONS", "_GLIBCXX_USE_CXX11_ABI=<(torch_abi)"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++14", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-frtti", "-O3", "-fno-math-errno", "-Wno-unused-parameter", "-Wno-deprecated-declarations"],
      "libraries": ["-L<(torch_lib)", "-Wl,-rpath,<(torch_lib)", "-Wl,--no-as-needed", "-ltorch_cpu", "-ltorch", "-lc10"]
    }
  ]
}
