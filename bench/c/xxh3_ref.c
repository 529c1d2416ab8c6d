/* C reference for `npm run bench -- hash`: XXH3-64 of every 4 KiB page of a 256 MiB
 * buffer, linked against the system libxxhash (Debian libxxhash-dev).
 * usage: xxh3_ref MiB PAGE REPS [dispatch]
 * Prints one JSON line: {"gbps":[...per rep], "xor":"<hex xor of all page hashes>"}.
 * The buffer is filled with the same xorshift32 stream as bench/hash.ts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

/* Exported by Debian's libxxhash (built with its x86 runtime dispatcher). */
XXH64_hash_t XXH3_64bits_dispatch(const void* input, size_t len);

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  if (argc < 4) return 2;
  size_t bytes = (size_t)atol(argv[1]) << 20, page = (size_t)atol(argv[2]);
  int reps = atoi(argv[3]), dispatch = argc > 4 && strcmp(argv[4], "dispatch") == 0;
  uint32_t* words = malloc(bytes);
  size_t pages = bytes / page;
  uint64_t* out = malloc(pages * sizeof(uint64_t));
  if (!words || !out) return 3;
  uint32_t x = 0x9E3779B9u;
  for (size_t i = 0; i < bytes / 4; i++) {
    x ^= x << 13; x ^= x >> 17; x ^= x << 5;
    words[i] = x;
  }
  const unsigned char* data = (const unsigned char*)words;
  printf("{\"gbps\":[");
  uint64_t acc = 0;
  for (int r = -1; r < reps; r++) { /* r = -1 is the warm-up pass */
    double t0 = now();
    if (dispatch)
      for (size_t p = 0; p < pages; p++) out[p] = XXH3_64bits_dispatch(data + p * page, page);
    else
      for (size_t p = 0; p < pages; p++) out[p] = XXH3_64bits(data + p * page, page);
    double dt = now() - t0;
    acc = 0;
    for (size_t p = 0; p < pages; p++) acc ^= out[p];
    if (r >= 0) printf("%s%.4f", r ? "," : "", bytes / dt / 1e9);
  }
  printf("],\"xor\":\"%016llx\"}\n", (unsigned long long)acc);
  return 0;
}
