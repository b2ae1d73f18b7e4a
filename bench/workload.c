/*
 * The benchmark's workload: hold N MiB of data in memory and count.
 *
 *   workload MIB random|compressible [TICK_MS]
 *
 * Allocates MIB mebibytes, fills them (random: xorshift64* output, which no compressor can
 * shrink; compressible: numbered text lines, which zstd shrinks about tenfold), so that every
 * page is touched and resident. Then writes /tmp/ready and loops forever: every TICK_MS
 * milliseconds (default 100) it increments a counter and writes it to /tmp/counter (atomically:
 * temp file + rename), so a restored copy can be seen to carry on from where the checkpoint
 * stopped it. When TICK_MS is given, each tick also appends a line "MONOTONIC REALTIME" (both
 * clocks in nanoseconds) to /tmp/ticks (opened, written, closed each time: no file is held open
 * across a checkpoint): the largest gap between two lines' REALTIME is the time the program did
 * not run, e.g. a migration's downtime (bench/migrate.py). Not the MONOTONIC one: CRIU restores
 * a process into a time namespace whose offsets hide most of the stop from CLOCK_MONOTONIC (a
 * 5.5 s stop showed as 1.4 s there). REALTIME compares across hosts only as well as their
 * clocks agree: bench/migrate.py's two "hosts" share one machine's clock.
 *
 * Built by bench/run.py with `gcc -O2 -static`; it needs nothing from the image but /tmp.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void write_file(const char *path, const char *tmp, const char *text) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(tmp);
        exit(1);
    }
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len) {
        perror(tmp);
        exit(1);
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        perror(path);
        exit(1);
    }
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void append_tick(long long ns) { /* ns: CLOCK_MONOTONIC */
    char line[64];
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    int len = snprintf(line, sizeof(line), "%lld %lld\n", ns, (long long)rt.tv_sec * 1000000000LL + rt.tv_nsec);
    int fd = open("/tmp/ticks", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) {
        perror("/tmp/ticks");
        exit(1);
    }
    if (write(fd, line, (size_t)len) != len) {
        perror("/tmp/ticks");
        exit(1);
    }
    close(fd);
}

static void fill_random(uint64_t *words, size_t count) {
    uint64_t x = 0x9E3779B97F4A7C15ULL ^ (uint64_t)time(NULL);
    for (size_t i = 0; i < count; i++) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        words[i] = x * 0x2545F4914F6CDD1DULL;
    }
}

static void fill_compressible(char *buf, size_t size) {
    /* "line 00000000: the quick brown fox jumps over the lazy dog\n", numbered in decimal. */
    static const char tail[] = ": the quick brown fox jumps over the lazy dog\n";
    char line[80];
    size_t tail_len = sizeof(tail) - 1, line_len = 5 + 8 + tail_len;
    memcpy(line, "line ", 5);
    memcpy(line + 13, tail, tail_len);
    size_t off = 0;
    for (uint32_t n = 0; off < size; n++) {
        uint32_t v = n;
        for (int d = 12; d >= 5; d--) {
            line[d] = (char)('0' + v % 10);
            v /= 10;
        }
        size_t take = size - off < line_len ? size - off : line_len;
        memcpy(buf + off, line, take);
        off += take;
    }
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4 || (strcmp(argv[2], "random") != 0 && strcmp(argv[2], "compressible") != 0)) {
        fprintf(stderr, "usage: %s MIB random|compressible [TICK_MS]\n", argv[0]);
        return 2;
    }
    long mib = strtol(argv[1], NULL, 10);
    if (mib <= 0) {
        fprintf(stderr, "workload: MIB must be a positive number\n");
        return 2;
    }
    long tick_ms = argc == 4 ? strtol(argv[3], NULL, 10) : 100;
    if (tick_ms <= 0 || tick_ms > 10000) {
        fprintf(stderr, "workload: TICK_MS must be between 1 and 10000\n");
        return 2;
    }
    int record = argc == 4;
    size_t size = (size_t)mib << 20;
    char *buf = malloc(size);
    if (buf == NULL) {
        perror("malloc");
        return 1;
    }
    if (strcmp(argv[2], "random") == 0)
        fill_random((uint64_t *)buf, size / sizeof(uint64_t));
    else
        fill_compressible(buf, size);
    /* Every page is written above; read one byte of each too, so no page can stay untouched. */
    volatile unsigned char sum = 0;
    for (size_t off = 0; off < size; off += 4096)
        sum += (unsigned char)buf[off];

    char text[64];
    snprintf(text, sizeof(text), "%ld %s %u\n", mib, argv[2], (unsigned)sum);
    write_file("/tmp/ready", "/tmp/.ready.tmp", text);

    long long period = tick_ms * 1000000LL, next = now_ns();
    for (unsigned long counter = 1;; counter++) {
        long long now = now_ns();
        if (record)
            append_tick(now);
        snprintf(text, sizeof(text), "%lu\n", counter);
        write_file("/tmp/counter", "/tmp/.counter.tmp", text);
        /* Absolute deadlines keep the period exact; after a stop (a checkpoint) the next tick is
         * one period from now, not a burst of the ticks missed meanwhile. */
        next += period;
        if (next <= now)
            next = now + period;
        struct timespec at = {(time_t)(next / 1000000000LL), (long)(next % 1000000000LL)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) != 0) {
        }
    }
}
