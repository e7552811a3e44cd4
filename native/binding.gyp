{
  # Built by tools/build-native.mjs, which detects OpenBLAS and passes the result in through the
  # environment: UNIME_BLAS=openblas links it, anything else builds our own multi-threaded SGEMM.
  "variables": {
    "unime_blas%": "<!(node -p \"process.env.UNIME_BLAS || 'builtin'\")",
    "unime_blas_include%": "<!(node -p \"process.env.UNIME_BLAS_INCLUDE || ''\")",
    "unime_blas_libdir%": "<!(node -p \"process.env.UNIME_BLAS_LIBDIR || ''\")",
    "unime_arch_flags%": "<!(node -p \"process.env.UNIME_ARCH_FLAGS === undefined ? '-march=native' : process.env.UNIME_ARCH_FLAGS\")"
  },
  "targets": [
    {
      "target_name": "unime_native",
      "sources": ["src/addon.cc", "src/attention.cc", "src/elementwise.cc", "src/gemm.cc", "src/kernels.cc", "src/norms.cc", "src/thread_pool.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions", "-fno-math-errno", "-ffp-contract=fast", "<@(unime_arch_flags)"],
      "ldflags": ["-pthread"],
      "conditions": [
        ["unime_blas=='openblas'", {
          "defines": ["UNIME_USE_OPENBLAS"],
          "include_dirs": ["<(unime_blas_include)"],
          "libraries": ["-L<(unime_blas_libdir)", "-Wl,-rpath,<(unime_blas_libdir)", "-lopenblas"]
        }]
      ]
    }
  ]
}
