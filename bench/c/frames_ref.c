/* C reference for `npm run bench -- transport-loopback`: DWCP's data path with no
 * JavaScript, to show what a native data plane could reach on this machine.
 *
 *   frames_ref rx <size> <total> [warm]          listens on 127.0.0.1, prints "port N", "measuring"
 *                                                when its clock starts, then one JSON line
 *                                                {bytes, messages, seconds, cpuSeconds}
 *   frames_ref tx <size> <total> <port> [warm]   sends ceil(warm / size) + ceil(total / size)
 *                                                messages, then prints one JSON line {cpuSeconds}
 *                                                (the process's CPU in all)
 *
 * As with the agents (bench/lib/loopback-agent.mjs), only what follows the first
 * <warm> bytes (default 0) is measured.
 *
 * Each message of <size> bytes goes out as DATA frames of at most 256 KiB (a
 * session's frames may be up to its negotiated maximum, 1 MiB by default) with
 * the 32-byte header of docs/PROTOCOL.md §3 and its CRC-32C over header bytes
 * 0-27 continued over the payload, written with one writev per message from one
 * reused buffer (as the agents send one buffer again and again). The receiver
 * reads into one reused 256 KiB buffer, parses every header, checks every CRC and
 * counts messages by their END flag; any mismatch exits non-zero. No session
 * protocol (handshake, acks, windows): this is the cost of framing and checksums
 * alone. CRC-32C comes from ISA-L (Debian libisal-dev). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <isa-l/crc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define FRAME_MAX (256u << 10)
#define HEADER 32u

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

/* ISA-L's crc32_iscsi carries the raw register: the DWCP value is its complement
 * with an all-ones start (checked against the standard check value at start-up). */
static uint32_t crc_begin(void) { return 0xFFFFFFFFu; }
static uint32_t crc_more(uint32_t reg, const uint8_t* p, size_t n) { return crc32_iscsi((unsigned char*)p, (int)n, reg); }
static uint32_t crc_end(uint32_t reg) { return ~reg; }

/* CPU seconds (user + system) this process has used so far. */
static double cpu(void) {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

static void put32(uint8_t* p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t* p, uint64_t v) { memcpy(p, &v, 8); }

static int rx(size_t size, unsigned long long total, unsigned long long warm) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  if (l < 0 || bind(l, (struct sockaddr*)&a, sizeof a) || listen(l, 1) || getsockname(l, (struct sockaddr*)&a, &al)) return 3;
  printf("port %d\n", ntohs(a.sin_port));
  fflush(stdout);
  int s = accept(l, NULL, NULL);
  if (s < 0) return 3;
  uint8_t* buf = malloc(FRAME_MAX);
  uint8_t hdr[HEADER];
  size_t have = 0, left = 0; /* header bytes gathered; payload bytes still due */
  uint32_t reg = 0, want = 0;
  int end = 0;
  unsigned long long warmCount = (warm + size - 1) / size, count = warmCount + (total + size - 1) / size;
  unsigned long long payload = 0, messages = 0, payload0 = 0, messages0 = 0;
  double first = 0, last = 0, cpu0 = 0;
  while (messages < count) {
    ssize_t n = read(s, buf, FRAME_MAX);
    if (n <= 0) return 4;
    if (first == 0 && messages >= warmCount) {
      printf("measuring\n");
      fflush(stdout);
      first = now(), cpu0 = cpu(), payload0 = payload, messages0 = messages;
    }
    for (size_t i = 0; i < (size_t)n;) {
      if (left == 0 && have < HEADER) {
        size_t k = HEADER - have < (size_t)n - i ? HEADER - have : (size_t)n - i;
        memcpy(hdr + have, buf + i, k);
        have += k;
        i += k;
        if (have < HEADER) break;
        uint32_t len;
        memcpy(&len, hdr + 4, 4);
        memcpy(&want, hdr + 28, 4);
        if (hdr[0] != 1 || len > FRAME_MAX) return 5;
        end = hdr[1] & 1;
        reg = crc_more(crc_begin(), hdr, 28);
        left = len;
      }
      size_t k = left < (size_t)n - i ? left : (size_t)n - i;
      reg = crc_more(reg, buf + i, k);
      i += k;
      left -= k;
      payload += k;
      if (left == 0) {
        if (crc_end(reg) != want) {
          fprintf(stderr, "frames_ref: CRC mismatch\n");
          return 6;
        }
        have = 0;
        if (end) messages++;
      }
    }
    last = now();
  }
  printf("{\"bytes\":%llu,\"messages\":%llu,\"seconds\":%.6f,\"cpuSeconds\":%.6f}\n", payload - payload0,
         messages - messages0, last - first, cpu() - cpu0);
  return 0;
}

static int tx(size_t size, unsigned long long total, int port, unsigned long long warm) {
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0 || connect(s, (struct sockaddr*)&a, sizeof a)) return 3;
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  uint8_t* msg = malloc(size);
  memset(msg, 0x5a, size);
  size_t frames = (size + FRAME_MAX - 1) / FRAME_MAX;
  uint8_t* hdrs = calloc(frames, HEADER);
  struct iovec* iov = calloc(2 * frames, sizeof *iov);
  unsigned long long count = (warm + size - 1) / size + (total + size - 1) / size;
  for (unsigned long long id = 1; id <= count; id++) {
    for (size_t f = 0; f < frames; f++) {
      size_t off = f * FRAME_MAX, len = size - off < FRAME_MAX ? size - off : FRAME_MAX;
      uint8_t* h = hdrs + f * HEADER;
      h[0] = 1;
      h[1] = f + 1 == frames ? 1 : 0;
      put32(h + 4, (uint32_t)len);
      put64(h + 8, id);
      put64(h + 16, off);
      put32(h + 28, crc_end(crc_more(crc_more(crc_begin(), h, 28), msg + off, len)));
      iov[2 * f] = (struct iovec){h, HEADER};
      iov[2 * f + 1] = (struct iovec){msg + off, len};
    }
    struct iovec* v = iov;
    int cnt = (int)(2 * frames);
    while (cnt > 0) {
      ssize_t n = writev(s, v, cnt);
      if (n < 0) return 4;
      while (cnt > 0 && (size_t)n >= v->iov_len) n -= v++->iov_len, cnt--;
      if (cnt > 0) v->iov_base = (uint8_t*)v->iov_base + n, v->iov_len -= n;
    }
  }
  shutdown(s, SHUT_WR);
  char b;
  while (read(s, &b, 1) > 0) {
  }
  printf("{\"cpuSeconds\":%.6f}\n", cpu());
  return 0;
}

int main(int argc, char** argv) {
  if (argc < 4) return 2;
  if (crc_end(crc_more(crc_begin(), (const uint8_t*)"123456789", 9)) != 0xE3069283u) {
    fprintf(stderr, "frames_ref: ISA-L crc32_iscsi is not CRC-32C as DWCP uses it\n");
    return 7;
  }
  size_t size = strtoull(argv[2], NULL, 10);
  unsigned long long total = strtoull(argv[3], NULL, 10);
  if (strcmp(argv[1], "rx") == 0) return rx(size, total, argc > 4 ? strtoull(argv[4], NULL, 10) : 0);
  if (strcmp(argv[1], "tx") == 0 && argc > 4)
    return tx(size, total, atoi(argv[4]), argc > 5 ? strtoull(argv[5], NULL, 10) : 0);
  return 2;
}
