/*
 * bulkhead-pinns: creates a pod's namespaces without a process to hold them.
 *
 * A pod's containers share IPC and UTS namespaces (and a network namespace). Instead of a
 * long-lived "pause" process whose /proc/PID/ns files the containers join, this helper unshares the
 * namespaces once, configures them (hostname, loopback up, sysctls), and bind-mounts each
 * /proc/self/ns/<type> onto a file. The files keep the namespaces alive; containers join them by
 * path; `--unpin` unmounts and removes the files again.
 *
 *   bulkhead-pinns [--join-net PATH] [--ipc FILE] [--uts FILE] [--net FILE]
 *                  [--hostname NAME] [--lo-up] [--sysctl KEY=VALUE]...
 *   bulkhead-pinns --unpin FILE...
 *
 * --join-net enters an existing network namespace first (for net.* sysctls of a CNI netns).
 * Exit 0 on success; otherwise a one-line message on stderr, exit 1, and nothing left behind.
 * Runs in the caller's mount namespace, so the bind mounts are visible to the whole host.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_SYSCTLS 64

struct pin {
  const char *type; /* name under /proc/self/ns */
  const char *file; /* where to pin it, or NULL */
  int flag;
  int pinned;
};

static struct pin pins[] = {
    {"ipc", NULL, CLONE_NEWIPC, 0},
    {"uts", NULL, CLONE_NEWUTS, 0},
    {"net", NULL, CLONE_NEWNET, 0},
};
#define NPINS (sizeof(pins) / sizeof(pins[0]))

static void unpin_file(const char *file) {
  if (umount2(file, MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
    fprintf(stderr, "bulkhead-pinns: umount %s: %s\n", file, strerror(errno));
  if (unlink(file) != 0 && errno != ENOENT)
    fprintf(stderr, "bulkhead-pinns: unlink %s: %s\n", file, strerror(errno));
}

static void undo(void) {
  for (size_t i = 0; i < NPINS; i++)
    if (pins[i].file) unpin_file(pins[i].file);
}

static int fail(const char *what, const char *arg) {
  int e = errno;
  fprintf(stderr, "bulkhead-pinns: %s %s: %s\n", what, arg ? arg : "", e ? strerror(e) : "invalid");
  undo();
  return 1;
}

/* KEY is dotted (net.ipv4.ip_forward) or slashed; only [A-Za-z0-9_.-/], no "..", no leading "/". */
static int sysctl_path(const char *key, size_t len, char *out, size_t outlen) {
  if (len == 0 || key[0] == '/' || key[0] == '.' || len + 11 >= outlen) return -1;
  memcpy(out, "/proc/sys/", 10);
  for (size_t i = 0; i < len; i++) {
    char c = key[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' || c == '/'))
      return -1;
    if ((c == '.' || c == '/') && i + 1 < len && (key[i + 1] == '.' || key[i + 1] == '/')) return -1;
    out[10 + i] = c == '.' ? '/' : c;
  }
  out[10 + len] = 0;
  return 0;
}

static int write_sysctl(const char *kv) {
  const char *eq = strchr(kv, '=');
  char path[512];
  errno = 0;
  if (!eq || sysctl_path(kv, (size_t)(eq - kv), path, sizeof path) != 0) return fail("invalid sysctl", kv);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return fail("sysctl", kv);
  size_t n = strlen(eq + 1);
  if (write(fd, eq + 1, n) != (ssize_t)n) { close(fd); return fail("sysctl", kv); }
  close(fd);
  return 0;
}

static int loopback_up(void) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return fail("socket", "");
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) { close(s); return fail("get flags of", "lo"); }
  ifr.ifr_flags |= IFF_UP;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) { close(s); return fail("set lo", "up"); }
  close(s);
  return 0;
}

int main(int argc, char **argv) {
  const char *join_net = NULL, *hostname = NULL;
  const char *sysctls[MAX_SYSCTLS];
  int nsysctl = 0, lo_up = 0;

  if (argc >= 2 && strcmp(argv[1], "--unpin") == 0) {
    for (int i = 2; i < argc; i++) unpin_file(argv[i]);
    return 0;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--lo-up") == 0) { lo_up = 1; continue; }
    if (!v) { fprintf(stderr, "bulkhead-pinns: %s needs a value\n", a); return 2; }
    i++;
    if (strcmp(a, "--ipc") == 0) pins[0].file = v;
    else if (strcmp(a, "--uts") == 0) pins[1].file = v;
    else if (strcmp(a, "--net") == 0) pins[2].file = v;
    else if (strcmp(a, "--join-net") == 0) join_net = v;
    else if (strcmp(a, "--hostname") == 0) hostname = v;
    else if (strcmp(a, "--sysctl") == 0) {
      if (nsysctl == MAX_SYSCTLS) { fprintf(stderr, "bulkhead-pinns: too many sysctls\n"); return 2; }
      sysctls[nsysctl++] = v;
    } else { fprintf(stderr, "bulkhead-pinns: unknown option %s\n", a); return 2; }
  }
  if (join_net && pins[2].file) { fprintf(stderr, "bulkhead-pinns: --join-net and --net exclude each other\n"); return 2; }
  if (hostname && !pins[1].file) { fprintf(stderr, "bulkhead-pinns: --hostname needs --uts\n"); return 2; }

  /* The files first (so a failure later removes only what this run made). */
  for (size_t i = 0; i < NPINS; i++) {
    if (!pins[i].file) continue;
    int fd = open(pins[i].file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
    if (fd < 0) {
      const char *f = pins[i].file;
      for (size_t j = i; j < NPINS; j++) pins[j].file = NULL; /* not ours */
      return fail("create", f);
    }
    close(fd);
  }
  if (join_net) {
    int fd = open(join_net, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail("open", join_net);
    if (setns(fd, CLONE_NEWNET) != 0) { close(fd); return fail("setns", join_net); }
    close(fd);
  }
  int flags = 0;
  for (size_t i = 0; i < NPINS; i++)
    if (pins[i].file) flags |= pins[i].flag;
  if (flags && unshare(flags) != 0) return fail("unshare", "");
  if (hostname && sethostname(hostname, strlen(hostname)) != 0) return fail("sethostname", hostname);
  if (lo_up && loopback_up() != 0) return 1;
  for (int i = 0; i < nsysctl; i++)
    if (write_sysctl(sysctls[i]) != 0) return 1;
  for (size_t i = 0; i < NPINS; i++) {
    if (!pins[i].file) continue;
    char src[64];
    snprintf(src, sizeof src, "/proc/self/ns/%s", pins[i].type);
    if (mount(src, pins[i].file, NULL, MS_BIND, NULL) != 0) return fail("bind-mount onto", pins[i].file);
    pins[i].pinned = 1;
  }
  return 0;
}
