/*
 * bulkhead-seccomp-agent: the seccomp user-notification agent of the strict handler.
 *
 * runc installs the container's seccomp filter; for every rule whose action is SCMP_ACT_NOTIFY it
 * hands the filter's listener fd to the unix socket named by the spec's `linux.seccomp.listenerPath`
 * (the fd in an SCM_RIGHTS message, the container state as payload). This agent listens there,
 * receives one listener per process tree (the container, and one per `runc exec`) and answers every
 * notification:
 *
 *   --mode learn   let the system call run (SECCOMP_USER_NOTIF_FLAG_CONTINUE) and record it
 *   --mode deny    fail it with EPERM and count it (an event: the profile denied something)
 *
 * and keeps `--out FILE` up to date: one line per system call seen, "ARCH NR COUNT", written to a
 * temporary file, fsynced and renamed (a reader never sees half a file). A syscall seen for the
 * first time is written at once; counts at most every 500 ms and at exit.
 *
 *   bulkhead-seccomp-agent --mode learn|deny --socket PATH --out FILE [--max-seconds N]
 *
 * Prints "ready" on stdout once the socket listens, then closes stdout. Exits 0 when every
 * listener it received has hung up (all filtered processes are gone), when no listener arrived
 * within 120 s, after --max-seconds (default 7 days), or on SIGTERM/SIGINT. If the agent is gone,
 * the kernel fails notified system calls with ENOSYS: never a silent allow.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_LISTENERS 256
#define NR_SLOTS 1024 /* syscall numbers tracked per arch (x86_64 ends below 470; x32 folded in) */
#define ARCHES 3      /* 0 x86_64, 1 x32, 2 i386 */
static const char *ARCH_NAMES[ARCHES] = {"x86_64", "x32", "i386"};

static uint64_t counts[ARCHES][NR_SLOTS];
static int dirty_new = 0, dirty_counts = 0;
static const char *out_path;
static volatile sig_atomic_t stop_now = 0;

static void on_signal(int sig) { (void)sig; stop_now = 1; }

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void write_out(void) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", out_path) >= (int)sizeof tmp) return;
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return;
  FILE *f = fdopen(fd, "w");
  if (!f) { close(fd); return; }
  for (int a = 0; a < ARCHES; a++)
    for (int nr = 0; nr < NR_SLOTS; nr++)
      if (counts[a][nr]) fprintf(f, "%s %d %llu\n", ARCH_NAMES[a], nr, (unsigned long long)counts[a][nr]);
  fflush(f);
  fsync(fd);
  fclose(f);
  rename(tmp, out_path);
  dirty_new = dirty_counts = 0;
}

static void record(const struct seccomp_data *d) {
  int a, nr = d->nr;
  if (d->arch == AUDIT_ARCH_X86_64) {
    if (nr & 0x40000000) { a = 1; nr &= ~0x40000000; } else a = 0;
  } else if (d->arch == AUDIT_ARCH_I386) a = 2;
  else return;
  if (nr < 0 || nr >= NR_SLOTS) return;
  if (counts[a][nr]++ == 0) dirty_new = 1;
  dirty_counts = 1;
}

/* Receives the listener fd runc sends with SCM_RIGHTS; the payload (container state) is discarded. */
static int receive_listener(int conn) {
  char buf[4096];
  char ctl[CMSG_SPACE(sizeof(int) * 4)];
  int got = -1;
  for (;;) {
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctl;
    msg.msg_controllen = sizeof ctl;
    ssize_t n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      int nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (int i = 0; i < nfds; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        if (got < 0) got = fd; else close(fd);
      }
    }
    if (got >= 0) break; /* the state JSON that may follow is not needed */
  }
  close(conn);
  return got;
}

int main(int argc, char **argv) {
  const char *mode = NULL, *sock_path = NULL;
  long max_seconds = 7L * 24 * 3600;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--mode") && i + 1 < argc) mode = argv[++i];
    else if (!strcmp(argv[i], "--socket") && i + 1 < argc) sock_path = argv[++i];
    else if (!strcmp(argv[i], "--out") && i + 1 < argc) out_path = argv[++i];
    else if (!strcmp(argv[i], "--max-seconds") && i + 1 < argc) max_seconds = atol(argv[++i]);
    else { fprintf(stderr, "bulkhead-seccomp-agent: unknown argument %s\n", argv[i]); return 2; }
  }
  if (!mode || !sock_path || !out_path || (strcmp(mode, "learn") && strcmp(mode, "deny"))) {
    fprintf(stderr, "usage: bulkhead-seccomp-agent --mode learn|deny --socket PATH --out FILE [--max-seconds N]\n");
    return 2;
  }
  int deny = !strcmp(mode, "deny");

  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  struct seccomp_notif_sizes sizes;
  if (syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &sizes) != 0) {
    fprintf(stderr, "bulkhead-seccomp-agent: seccomp user notification is not supported by this kernel: %s\n", strerror(errno));
    return 1;
  }
  struct sockaddr_un addr = {0};
  addr.sun_family = AF_UNIX;
  if (strlen(sock_path) >= sizeof addr.sun_path) { fprintf(stderr, "bulkhead-seccomp-agent: socket path too long\n"); return 1; }
  strcpy(addr.sun_path, sock_path);
  int lsock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  unlink(sock_path);
  if (lsock < 0 || bind(lsock, (struct sockaddr *)&addr, sizeof addr) != 0 || chmod(sock_path, 0600) != 0 || listen(lsock, 16) != 0) {
    fprintf(stderr, "bulkhead-seccomp-agent: listen on %s: %s\n", sock_path, strerror(errno));
    return 1;
  }
  write_out(); /* an empty list exists from the start */
  printf("ready\n");
  fflush(stdout);
  int devnull = open("/dev/null", O_RDWR);
  if (devnull >= 0) { dup2(devnull, 0); dup2(devnull, 1); if (devnull > 1) close(devnull); }

  struct seccomp_notif *req = calloc(1, sizes.seccomp_notif > sizeof(struct seccomp_notif) ? sizes.seccomp_notif : sizeof(struct seccomp_notif));
  struct seccomp_notif_resp *resp = calloc(1, sizes.seccomp_notif_resp > sizeof(struct seccomp_notif_resp) ? sizes.seccomp_notif_resp : sizeof(struct seccomp_notif_resp));
  if (!req || !resp) return 1;

  struct pollfd pfds[MAX_LISTENERS + 1];
  int nl = 0, ever = 0;
  int64_t start = now_ms(), last_write = start;
  while (!stop_now) {
    int64_t t = now_ms();
    if (t - start > max_seconds * 1000) break;
    if (!ever && t - start > 120000) break;
    if (ever && nl == 0) break;
    pfds[0].fd = lsock;
    pfds[0].events = POLLIN;
    int r = poll(pfds, nl + 1, 500);
    if (r < 0 && errno != EINTR) break;
    if (r > 0 && (pfds[0].revents & POLLIN)) {
      int conn = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
      if (conn >= 0) {
        int fd = receive_listener(conn);
        if (fd >= 0 && nl < MAX_LISTENERS) { pfds[1 + nl].fd = fd; pfds[1 + nl].events = POLLIN; pfds[1 + nl].revents = 0; nl++; ever = 1; }
        else if (fd >= 0) close(fd);
      }
    }
    for (int i = 1; r > 0 && i <= nl; i++) {
      short ev = pfds[i].revents;
      pfds[i].revents = 0;
      if (ev & POLLIN) {
        memset(req, 0, sizes.seccomp_notif);
        if (ioctl(pfds[i].fd, SECCOMP_IOCTL_NOTIF_RECV, req) == 0) {
          record(&req->data);
          memset(resp, 0, sizes.seccomp_notif_resp);
          resp->id = req->id;
          if (deny) resp->error = -EPERM;
          else resp->flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
          /* ENOENT: the task was killed while waiting; nothing to answer */
          ioctl(pfds[i].fd, SECCOMP_IOCTL_NOTIF_SEND, resp);
        }
      } else if (ev & (POLLHUP | POLLERR | POLLNVAL)) {
        close(pfds[i].fd);
        pfds[i] = pfds[nl];
        nl--;
        i--;
      }
    }
    if (dirty_new || (dirty_counts && now_ms() - last_write >= 500)) { write_out(); last_write = now_ms(); }
  }
  write_out();
  unlink(sock_path);
  return 0;
}
