/*
 * The strict bench's syscall-heavy workload (built static by bench/strict.ts, put into the image):
 *   strict-loop getpid N   N getpid(2) calls
 *   strict-loop file N     N × (pwrite 4 KiB + pread 4 KiB) on a file in /tmp, then fsync once
 *   strict-loop tcp N      N × 64-byte ping-pong over loopback TCP (a forked echo server)
 * Prints "MODE N NS" (wall nanoseconds of the loop) on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: strict-loop getpid|file|tcp N\n"); return 2; }
  long n = atol(argv[2]);
  long long t0, t1;
  if (!strcmp(argv[1], "getpid")) {
    t0 = now();
    for (long i = 0; i < n; i++) syscall(SYS_getpid);
    t1 = now();
  } else if (!strcmp(argv[1], "file")) {
    char buf[4096];
    memset(buf, 'x', sizeof buf);
    int fd = open("/tmp/strict-loop.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) { perror("open"); return 1; }
    t0 = now();
    for (long i = 0; i < n; i++) {
      if (pwrite(fd, buf, sizeof buf, (i % 256) * 4096) != sizeof buf) { perror("pwrite"); return 1; }
      if (pread(fd, buf, sizeof buf, (i % 256) * 4096) != sizeof buf) { perror("pread"); return 1; }
    }
    fsync(fd);
    t1 = now();
    close(fd);
    unlink("/tmp/strict-loop.dat");
  } else if (!strcmp(argv[1], "tcp")) {
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1) || getsockname(ls, (struct sockaddr *)&a, &al)) { perror("listen"); return 1; }
    pid_t pid = fork();
    if (pid == 0) {
      int c = accept(ls, NULL, NULL);
      char b[64];
      for (;;) {
        ssize_t r = read(c, b, sizeof b);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue; /* gVisor's host network answers EAGAIN on a blocking socket */
        if (r <= 0) _exit(0);
        if (write(c, b, r) != r) _exit(1);
      }
    }
    int c = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c, (struct sockaddr *)&a, sizeof a)) { perror("connect"); return 1; }
    char b[64];
    memset(b, 'p', sizeof b);
    t0 = now();
    for (long i = 0; i < n; i++) {
      if (write(c, b, sizeof b) != sizeof b) { perror("write"); return 1; }
      size_t got = 0;
      while (got < sizeof b) {
        ssize_t r = read(c, b + got, sizeof b - got);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (r <= 0) { perror("read"); return 1; }
        got += r;
      }
    }
    t1 = now();
    close(c);
    waitpid(pid, NULL, 0);
  } else { fprintf(stderr, "unknown mode %s\n", argv[1]); return 2; }
  printf("%s %ld %lld\n", argv[1], n, t1 - t0);
  return 0;
}
