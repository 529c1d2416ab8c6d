#include "hash.h"

#include "hash_kernels.h"
#include "util.h"

#include <mutex>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define DWCP_X86 1
#endif

namespace dwcp {
namespace {

// ---- CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) -------------------------

uint32_t g_table[8][256];

void BuildTables() {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    g_table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++) {
    for (int t = 1; t < 8; t++) g_table[t][i] = (g_table[t - 1][i] >> 8) ^ g_table[0][g_table[t - 1][i] & 0xFF];
  }
}

// Slicing-by-8: the fallback for CPUs without the SSE4.2 crc32 instruction. The TS
// twin uses the same tables, so both paths agree bit for bit.
uint32_t Crc32cTable(uint32_t crc, const uint8_t* p, size_t n) {
  crc = ~crc;
  while (n >= 8) {
    uint32_t lo = crc ^ (uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24);
    crc = g_table[7][lo & 0xFF] ^ g_table[6][(lo >> 8) & 0xFF] ^ g_table[5][(lo >> 16) & 0xFF] ^
          g_table[4][lo >> 24] ^ g_table[3][p[4]] ^ g_table[2][p[5]] ^ g_table[1][p[6]] ^ g_table[0][p[7]];
    p += 8;
    n -= 8;
  }
  while (n--) crc = (crc >> 8) ^ g_table[0][(crc ^ *p++) & 0xFF];
  return ~crc;
}

#if DWCP_X86
// The crc32 instruction has a latency of three cycles but issues one per cycle, so
// one dependency chain uses a third of it. Long inputs run three chains over three
// adjacent blocks and join them: the register after A‖B equals the register after
// A advanced over |B| zero bytes, XOR the register of B started from zero (CRC is
// linear). Advancing over a fixed block length is a linear map on 32 bits, kept as
// four 256-entry tables.
constexpr size_t kCrcBlock = 2048;
uint32_t g_advance[4][256];

__attribute__((target("sse4.2"))) uint64_t Crc32cHwRun(uint64_t c, const uint8_t* p, size_t n) {
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t v;
    __builtin_memcpy(&v, p, 8);
    c = _mm_crc32_u64(c, v);
  }
  while (n--) c = _mm_crc32_u8(static_cast<uint32_t>(c), *p++);
  return c;
}

__attribute__((target("sse4.2"))) void BuildAdvanceTables() {
  static const uint8_t zeros[kCrcBlock] = {};
  uint32_t basis[32];
  for (int bit = 0; bit < 32; bit++) basis[bit] = static_cast<uint32_t>(Crc32cHwRun(1u << bit, zeros, kCrcBlock));
  for (int k = 0; k < 4; k++) {
    for (uint32_t byte = 0; byte < 256; byte++) {
      uint32_t v = 0;
      for (int b = 0; b < 8; b++)
        if (byte & (1u << b)) v ^= basis[8 * k + b];
      g_advance[k][byte] = v;
    }
  }
}

inline uint32_t AdvanceBlock(uint32_t c) {
  return g_advance[0][c & 0xFF] ^ g_advance[1][(c >> 8) & 0xFF] ^ g_advance[2][(c >> 16) & 0xFF] ^
         g_advance[3][c >> 24];
}

__attribute__((target("sse4.2"))) uint32_t Crc32cHw(uint32_t crc, const uint8_t* p, size_t n) {
  uint64_t c = ~crc;
  while (n && (reinterpret_cast<uintptr_t>(p) & 7)) {
    c = _mm_crc32_u8(static_cast<uint32_t>(c), *p++);
    n--;
  }
  while (n >= 3 * kCrcBlock) {
    uint64_t c1 = 0;
    uint64_t c2 = 0;
    const uint8_t* p1 = p + kCrcBlock;
    const uint8_t* p2 = p + 2 * kCrcBlock;
    for (size_t i = 0; i < kCrcBlock; i += 8) {
      uint64_t v0, v1, v2;
      __builtin_memcpy(&v0, p + i, 8);
      __builtin_memcpy(&v1, p1 + i, 8);
      __builtin_memcpy(&v2, p2 + i, 8);
      c = _mm_crc32_u64(c, v0);
      c1 = _mm_crc32_u64(c1, v1);
      c2 = _mm_crc32_u64(c2, v2);
    }
    c = AdvanceBlock(AdvanceBlock(static_cast<uint32_t>(c)) ^ static_cast<uint32_t>(c1)) ^ static_cast<uint32_t>(c2);
    p += 3 * kCrcBlock;
    n -= 3 * kCrcBlock;
  }
  return ~static_cast<uint32_t>(Crc32cHwRun(c, p, n));
}
#endif

using Crc32cFn = uint32_t (*)(uint32_t, const uint8_t*, size_t);
using Xxh3PagesFn = void (*)(const uint8_t*, size_t, size_t, uint64_t*, size_t);
using Xxh3Fn = uint64_t (*)(const uint8_t*, size_t, uint64_t);

// Chosen once at load from CPUID; never re-checked per call.
Crc32cFn g_crc32c = Crc32cTable;
Xxh3PagesFn g_xxh3_pages = Xxh3PagesSse2;
Xxh3Fn g_xxh3 = Xxh3Sse2;
const char* g_crc_impl = "table";
const char* g_xxh3_impl = "sse2";

void Select() {
  BuildTables();
#if DWCP_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2")) {
    BuildAdvanceTables();
    g_crc32c = Crc32cHw;
    g_crc_impl = "sse4.2";
  }
#if defined(DWCP_HAVE_AVX2)
  if (__builtin_cpu_supports("avx2")) {
    g_xxh3_pages = Xxh3PagesAvx2;
    g_xxh3 = Xxh3Avx2;
    g_xxh3_impl = "avx2";
  }
#endif
#else
  g_xxh3_impl = "scalar";
#endif
}

// crc32c(data: Uint8Array, initial: number) -> number
Napi::Value JsCrc32c(const Napi::CallbackInfo& info) {
  Bytes b;
  if (!GetBytes(info, 0, &b)) return Napi::Value();
  uint32_t init = info[1].IsNumber() ? info[1].As<Napi::Number>().Uint32Value() : 0;
  return Napi::Number::New(info.Env(), g_crc32c(init, b.data, b.length));
}

// xxh3_64(data: Uint8Array) -> bigint. Unseeded: page identity must be the same value
// on every node, and the TS twin offers exactly this function.
Napi::Value JsXxh3(const Napi::CallbackInfo& info) {
  Bytes b;
  if (!GetBytes(info, 0, &b)) return Napi::Value();
  return Napi::BigInt::New(info.Env(), g_xxh3(b.data, b.length, 0));
}

// xxh3Pages(data: Uint8Array, pageSize: number, out: BigUint64Array) -> count
// One call hashes every page of `data`; the TS layer has already checked that `out`
// holds ceil(length / pageSize) entries.
Napi::Value JsXxh3Pages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Bytes b;
  if (!GetBytes(info, 0, &b)) return Napi::Value();
  if (!info[1].IsNumber() || !info[2].IsTypedArray()) {
    ThrowCode(env, "ERR_INVALID_ARG", "xxh3Pages(data, pageSize, out: BigUint64Array)");
    return Napi::Value();
  }
  int64_t ps = info[1].As<Napi::Number>().Int64Value();
  Napi::TypedArray out = info[2].As<Napi::TypedArray>();
  if (ps <= 0 || out.TypedArrayType() != napi_biguint64_array) {
    ThrowCode(env, "ERR_INVALID_ARG", "pageSize must be > 0 and out a BigUint64Array");
    return Napi::Value();
  }
  size_t page = static_cast<size_t>(ps);
  size_t count = (b.length + page - 1) / page;
  if (out.ElementLength() < count) {
    ThrowCode(env, "ERR_INVALID_ARG", "out is too small for the number of pages");
    return Napi::Value();
  }
  auto* dst = reinterpret_cast<uint64_t*>(static_cast<uint8_t*>(out.ArrayBuffer().Data()) + out.ByteOffset());
  g_xxh3_pages(b.data, b.length, page, dst, count);
  return Napi::Number::New(env, static_cast<double>(count));
}

}  // namespace

uint32_t Crc32c(uint32_t crc, const uint8_t* data, size_t length) { return g_crc32c(crc, data, length); }

uint64_t Xxh3(const uint8_t* data, size_t length) { return g_xxh3(data, length, 0); }

void InitHash(Napi::Env env, Napi::Object exports, Napi::Object features) {
  // Worker threads load the addon again; the tables and choices are process-wide.
  static std::once_flag once;
  std::call_once(once, Select);
  exports.Set("crc32c", Napi::Function::New(env, JsCrc32c, "crc32c"));
  exports.Set("xxh3_64", Napi::Function::New(env, JsXxh3, "xxh3_64"));
  exports.Set("xxh3Pages", Napi::Function::New(env, JsXxh3Pages, "xxh3Pages"));
  features.Set("crc32c", Napi::String::New(env, g_crc_impl));
  features.Set("xxh3", Napi::String::New(env, g_xxh3_impl));
}

}  // namespace dwcp
