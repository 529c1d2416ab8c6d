{
  "target_defaults": {
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions"],
    "cflags": ["-O3", "-fvisibility=hidden", "-Wall", "-Wextra", "-Werror"],
    "cflags_cc": ["-O3", "-std=c++17", "-fvisibility=hidden", "-Wall", "-Wextra", "-Werror"],
    "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"]
  },
  "targets": [
    {
      "target_name": "dwcp_xxh3_avx2",
      "type": "static_library",
      "conditions": [
        ["target_arch=='x64'", {
          "sources": ["native/xxh3_avx2.cc"],
          "cflags_cc": ["-mavx2", "-fPIC"]
        }]
      ]
    },
    {
      "target_name": "dwcp",
      "sources": ["native/addon.cc", "native/hash.cc", "native/checksum.cc", "native/xxh3_sse2.cc", "native/tcpinfo.cc", "native/sockio.cc", "native/rdma.cc", "native/rdma/verbs.cc", "native/rdma/device.cc", "native/rdma/queue_pair.cc", "native/codec.cc", "native/codec_core.cc", "native/pages.cc", "native/pages_core.cc", "native/pool.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native"],
      "libraries": ["-ldl", "-lpthread"],
      "conditions": [
        ["<!(test -f /usr/include/infiniband/verbs.h && echo 1 || echo 0)==1", {
          "defines": ["DWCP_HAVE_VERBS"]
        }],
        ["<!(test -f /usr/include/lz4frame.h -a -f /usr/include/zstd.h -a -f /usr/include/zdict.h && echo 1 || echo 0)==1", {
          "defines": ["DWCP_HAVE_CODECS"],
          "libraries": ["-llz4", "-lzstd"]
        }],
        ["target_arch=='x64'", {
          "dependencies": ["dwcp_xxh3_avx2"],
          "defines": ["DWCP_HAVE_AVX2"]
        }]
      ]
    }
  ]
}
