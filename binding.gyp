# The optional `native` backend's Node-API addon (src/backend/native/csrc), built by
# scripts/build-native.mjs. The AVX2 and AVX-512 kernels are separate static libraries compiled with
# their own -m flags, so the addon still loads on any x86-64 CPU: isa_select() calls them only
# after checking the CPU.
{
  "variables": {
    "common_cflags": ["-std=gnu11", "-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=fast",
                      "-fPIC", "-Wall", "-Wextra", "-Wno-unused-parameter"]
  },
  "targets": [
    {
      "target_name": "skymoe_native",
      "sources": [
        "src/backend/native/csrc/addon.c",
        "src/backend/native/csrc/addon_weights.c",
        "src/backend/native/csrc/addon_paged.c",
        "src/backend/native/csrc/pool.c",
        "src/backend/native/csrc/weights.c",
        "src/backend/native/csrc/gemm.c",
        "src/backend/native/csrc/attention.c",
        "src/backend/native/csrc/paged_attention.c",
        "src/backend/native/csrc/ops.c",
        "src/backend/native/csrc/isa_generic.c"
      ],
      "cflags": ["<@(common_cflags)"],
      "cflags!": ["-O2", "-O0"],
      "libraries": ["-lpthread", "-lm"],
      "conditions": [
        ["target_arch=='x64'", {
          "defines": ["SKYMOE_X86"],
          "dependencies": ["skymoe_avx2", "skymoe_avx512", "skymoe_amx"]
        }]
      ]
    },
    {
      "target_name": "skymoe_avx2",
      "type": "static_library",
      "sources": ["src/backend/native/csrc/isa_avx2.c"],
      "defines": ["SKYMOE_X86"],
      "cflags": ["<@(common_cflags)", "-mavx2", "-mfma", "-mf16c"],
      "cflags!": ["-O2", "-O0"]
    },
    {
      "target_name": "skymoe_avx512",
      "type": "static_library",
      "sources": ["src/backend/native/csrc/isa_avx512.c"],
      "defines": ["SKYMOE_X86"],
      "cflags": ["<@(common_cflags)", "-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq",
                 "-mprefer-vector-width=512"],
      "cflags!": ["-O2", "-O0"]
    },
    {
      "target_name": "skymoe_amx",
      "type": "static_library",
      "sources": ["src/backend/native/csrc/amx.c"],
      "defines": ["SKYMOE_X86"],
      "cflags": ["<@(common_cflags)", "-mamx-tile", "-mamx-bf16", "-mavx512f", "-mavx512bw", "-mavx512vl"],
      "cflags!": ["-O2", "-O0"]
    }
  ]
}
