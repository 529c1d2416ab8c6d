// The checksum kernels behind hash.cc: CRC-32C (frame checksum) and XXH3-64 (page
// identity), each implementation chosen once per process from CPUID. Free of N-API,
// so the fuzz harnesses (test/fuzz) link the same code the addon runs.
#include "checksum.h"

#include "hash_kernels.h"

#include <mutex>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
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

// Carry-less multiplication folding, 64 bytes per instruction pair: at 1 MiB frames
// the three crc32 chains above were a fifth of a sending agent's CPU time.
//
// Reflected 128-bit lanes: bit i of a lane is the coefficient of x^(127-i) of the
// 16 bytes it holds, so its low qword H is the high-degree half: lane = H·x^64 + L.
// Moving a lane D bits further along the message multiplies it by x^D, and modulo P
// only the remainder matters: H·x^(D+64) + L·x^D ≡ H·(x^(D+64) mod P) + L·(x^D mod P),
// a value of at most 96 bits that is XORed into the lane D bits later. pclmulqdq on
// reflected operands yields the product divided by x, hence the constants
// x^(D+63) and x^(D-1). What remains at the end is a 16-byte block congruent to the
// whole prefix; the crc32 instruction finishes from it (CRC is linear in the message
// polynomial), and the initial register is XORed into the first four bytes.
uint32_t XPowModP(unsigned k) {
  uint64_t r = 1;
  for (unsigned i = 0; i < k; i++) {
    r <<= 1;
    if (r >> 32) r ^= 0x11EDC6F41ull;  // P = x^32 + 0x1EDC6F41 (normal bit order)
  }
  return static_cast<uint32_t>(r);
}

// x^k mod P as a reflected 64-bit operand: the coefficient of x^m sits at bit 63 - m.
uint64_t FoldOperand(unsigned k) {
  uint32_t q = XPowModP(k);
  uint64_t v = 0;
  for (int m = 0; m < 32; m++)
    if ((q >> m) & 1u) v |= 1ull << (63 - m);
  return v;
}

// {low qword: x^(D+63), high qword: x^(D-1)} for a fold distance of D bits.
struct FoldPair {
  uint64_t forHigh;
  uint64_t forLow;
};
FoldPair g_fold2048, g_fold512, g_fold128;

FoldPair MakeFold(unsigned bits) { return {FoldOperand(bits + 63), FoldOperand(bits - 1)}; }

void BuildFoldConstants() {
  g_fold2048 = MakeFold(2048);
  g_fold512 = MakeFold(512);
  g_fold128 = MakeFold(128);
}

#define DWCP_VPCLMUL_TARGET __attribute__((target("avx512f,avx512vl,vpclmulqdq,pclmul,sse4.2")))

DWCP_VPCLMUL_TARGET inline __m512i Fold512(__m512i x, __m512i k, __m512i next) {
  return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00), _mm512_clmulepi64_epi128(x, k, 0x11), next,
                                   0x96);
}

DWCP_VPCLMUL_TARGET inline __m128i Fold128(__m128i x, __m128i k, __m128i next) {
  return _mm_ternarylogic_epi64(_mm_clmulepi64_si128(x, k, 0x00), _mm_clmulepi64_si128(x, k, 0x11), next, 0x96);
}

DWCP_VPCLMUL_TARGET __m512i Broadcast(const FoldPair& f) {
  const auto hi = static_cast<long long>(f.forHigh);
  const auto lo = static_cast<long long>(f.forLow);
  return _mm512_set_epi64(lo, hi, lo, hi, lo, hi, lo, hi);
}

// The masked form: the plain one merges into an undefined register, which GCC 12
// reports as maybe-uninitialized under -Werror.
template <int kLane>
DWCP_VPCLMUL_TARGET inline __m128i LaneOf(__m512i x) {
  return _mm512_maskz_extracti32x4_epi32(0xF, x, kLane);
}

constexpr size_t kFoldMin = 256;

DWCP_VPCLMUL_TARGET uint32_t Crc32cVpclmul(uint32_t crc, const uint8_t* p, size_t n) {
  if (n < kFoldMin) return Crc32cHw(crc, p, n);
  const __m512i init = _mm512_inserti32x4(_mm512_setzero_si512(), _mm_cvtsi32_si128(static_cast<int>(~crc)), 0);
  __m512i x0 = _mm512_xor_si512(_mm512_loadu_si512(p), init);
  __m512i x1 = _mm512_loadu_si512(p + 64);
  __m512i x2 = _mm512_loadu_si512(p + 128);
  __m512i x3 = _mm512_loadu_si512(p + 192);
  p += 256;
  n -= 256;
  // Four accumulators, each moved 256 bytes on per round: four independent chains
  // keep the multiplier busy despite its latency.
  const __m512i k2048 = Broadcast(g_fold2048);
  for (; n >= 256; p += 256, n -= 256) {
    x0 = Fold512(x0, k2048, _mm512_loadu_si512(p));
    x1 = Fold512(x1, k2048, _mm512_loadu_si512(p + 64));
    x2 = Fold512(x2, k2048, _mm512_loadu_si512(p + 128));
    x3 = Fold512(x3, k2048, _mm512_loadu_si512(p + 192));
  }
  const __m512i k512 = Broadcast(g_fold512);
  x1 = Fold512(x0, k512, x1);
  x2 = Fold512(x1, k512, x2);
  x3 = Fold512(x2, k512, x3);
  for (; n >= 64; p += 64, n -= 64) x3 = Fold512(x3, k512, _mm512_loadu_si512(p));
  const __m128i k128 = _mm_set_epi64x(static_cast<long long>(g_fold128.forLow), static_cast<long long>(g_fold128.forHigh));
  __m128i a = Fold128(LaneOf<0>(x3), k128, LaneOf<1>(x3));
  a = Fold128(a, k128, LaneOf<2>(x3));
  a = Fold128(a, k128, LaneOf<3>(x3));
  for (; n >= 16; p += 16, n -= 16) a = Fold128(a, k128, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  uint64_t c = _mm_crc32_u64(0, static_cast<uint64_t>(_mm_cvtsi128_si64(a)));
  c = _mm_crc32_u64(c, static_cast<uint64_t>(_mm_extract_epi64(a, 1)));
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

// Every CRC-32C implementation this CPU can run, best last: crc32cWith() lets the
// parity tests check each of them, not only the one chosen.
std::vector<CrcImpl> g_crc_impls;
const char* g_xxh3_impl = "sse2";

void Select() {
  BuildTables();
  g_crc_impls.push_back({"table", Crc32cTable});
#if DWCP_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("sse4.2")) {
    BuildAdvanceTables();
    g_crc32c = Crc32cHw;
    g_crc_impl = "sse4.2";
    g_crc_impls.push_back({g_crc_impl, g_crc32c});
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("vpclmulqdq") && __builtin_cpu_supports("pclmul")) {
      BuildFoldConstants();
      g_crc32c = Crc32cVpclmul;
      g_crc_impl = "avx512-vpclmulqdq";
      g_crc_impls.push_back({g_crc_impl, g_crc32c});
    }
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

}  // namespace

void SelectChecksums() {
  // Worker threads load the addon again; the tables and choices are process-wide.
  static std::once_flag once;
  std::call_once(once, Select);
}

uint32_t Crc32c(uint32_t crc, const uint8_t* data, size_t length) { return g_crc32c(crc, data, length); }

uint64_t Xxh3(const uint8_t* data, size_t length) { return g_xxh3(data, length, 0); }

void Xxh3Pages(const uint8_t* data, size_t length, size_t pageSize, uint64_t* out, size_t count) {
  g_xxh3_pages(data, length, pageSize, out, count);
}

const std::vector<CrcImpl>& CrcImpls() { return g_crc_impls; }
const char* CrcImplName() { return g_crc_impl; }
const char* Xxh3ImplName() { return g_xxh3_impl; }

}  // namespace dwcp
