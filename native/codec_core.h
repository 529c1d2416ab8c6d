// The codecs (codec_core.cc) and the page frames built on them (pages_core.cc),
// without N-API: codec.cc and pages.cc bind them to JS, and the fuzz harnesses in
// test/fuzz compile exactly this code under AddressSanitizer (they include this one
// header). Everything a peer sends reaches these functions unchecked; they trust
// only the limits their caller passes.
#pragma once

#ifdef DWCP_HAVE_CODECS

#include <zstd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

namespace dwcp {

// A result buffer owned by malloc until its consumer adopts it.
struct Out {
  uint8_t* data = nullptr;
  size_t length = 0;
  const char* code = nullptr;  // DWCP error code when failed
  std::string message;
  Out() = default;
  Out(const Out&) = delete;
  Out& operator=(const Out&) = delete;
  ~Out() { std::free(data); }
  bool Fail(const char* c, std::string m) {
    code = c;
    message = std::move(m);
    return false;
  }
};

// A zstd dictionary prepared for both directions.
struct Dict {
  ZSTD_CDict* cdict = nullptr;
  ZSTD_DDict* ddict = nullptr;
  unsigned id = 0;
  Dict() = default;
  Dict(const Dict&) = delete;
  Dict& operator=(const Dict&) = delete;
  ~Dict() {
    ZSTD_freeCDict(cdict);
    ZSTD_freeDDict(ddict);
  }
};

// Null when the bytes are not a usable dictionary.
std::shared_ptr<Dict> MakeDict(const uint8_t* bytes, size_t n, int level);

bool Lz4Compress(const uint8_t* src, size_t n, int level, Out* out);
// Decodes one LZ4 frame of exactly `n` bytes into at most `maxOut` bytes. Never
// allocates more than `maxOut`, nor more than the frame's bytes can expand to,
// whatever its header declares. ERR_MESSAGE_TOO_LARGE above `maxOut`,
// ERR_CORRUPT_PAYLOAD for anything malformed.
bool Lz4Decompress(const uint8_t* src, size_t n, size_t maxOut, Out* out);
// The same into `dst`, `cap` bytes the caller owns (`cap` is then the limit): no
// allocation, and the bytes land where they are wanted. `*produced` is the decoded
// length; on failure, `out` holds the code and `dst` is unspecified.
bool Lz4DecompressInto(const uint8_t* src, size_t n, uint8_t* dst, size_t cap, size_t* produced, Out* out);

bool ZstdCompress(const uint8_t* src, size_t n, int level, const Dict* dict, Out* out);
// Decodes one zstd frame of exactly `n` bytes (content size required) with the
// same bounds; ERR_DICTIONARY when it needs another dictionary than `dict`.
bool ZstdDecompress(const uint8_t* src, size_t n, size_t maxOut, const Dict* dict, Out* out);

// ---------------------------------------------------------------- page frames (pages_core.cc)

// One batch of pages to encode; the caller has validated every field.
struct PageJob {
  const uint8_t* image = nullptr;
  const uint8_t* base = nullptr;         // whole baseline image, or null
  const uint64_t* baseHashes = nullptr;  // whole-image page hashes of the baseline, or null
  size_t pageSize = 4096;
  size_t first = 0, count = 0;
  int codec = 1, level = 1;
  std::shared_ptr<Dict> dict;
  uint32_t imageId = 0, version = 1, baseVersion = 0;
  // Where the pages' kinds are counted, or null: zero, same, duplicate, delta
  // (sparse included) and full pages, then the bytes delta pages put in the raw
  // section. Written once the frame is built; a kept-alive JS Float64Array.
  double* stats = nullptr;
};

/** Slots of PageJob::stats. */
constexpr size_t kPageStatSlots = 6;

bool EncodePages(const PageJob& j, Out* out);

// One page frame to rebuild into `target`. Only the local buffers and their
// lengths are trusted; every field of the frame is checked here, whatever the
// caller checked before.
struct DecodeJob {
  const uint8_t* frame = nullptr;
  size_t length = 0;
  uint8_t* target = nullptr;  // the whole image being rebuilt
  size_t targetLength = 0;
  const uint8_t* base = nullptr;  // the baseline the frame names, or null
  size_t baseLength = 0;
  const uint64_t* baseHashes = nullptr;  // its page hashes at this page size, or null
  size_t baseHashCount = 0;
  std::shared_ptr<Dict> dict;
};

bool DecodePages(const DecodeJob& j, Out* out);

}  // namespace dwcp

#endif  // DWCP_HAVE_CODECS
