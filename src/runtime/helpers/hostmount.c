/*
 * bulkhead-hostmount: bind-mounts a container's host path onto a staging point the daemon owns,
 * so that what was checked is what gets mounted.
 *
 *   bulkhead-hostmount --source PATH --target STAGING [--beneath DIR] [--ro] [--protect P]... [--allow A]...
 *
 * The source is opened once (O_PATH) and everything after works on that descriptor: its real
 * path (readlink of /proc/self/fd/N) is checked, and /proc/self/fd/N is what is bind-mounted, so
 * swapping a path component for a symlink after the check changes nothing.
 *
 * --beneath DIR: SOURCE must lie under DIR (a pod's own kubelet directory) and is resolved with
 *   openat2 RESOLVE_BENEATH from DIR: a symlink that leads out of DIR (absolute, or via "..") is
 *   refused. Without openat2 (ENOSYS) every component is opened O_PATH|O_NOFOLLOW and a symlink
 *   anywhere is refused.
 * Otherwise SOURCE is opened following ordinary symlinks (never /proc magic links) and its real
 * path checked against every --protect P: equal to, under, or above (a parent of) P is refused;
 * with --allow it must also lie under one of the A (a level's listed host paths).
 * STAGING is created (a directory or an empty file, like the source) and must not be a symlink.
 * Prints the source's real path on stdout. Exit 0 mounted; 2 refused by a rule; 1 other failure.
 * Nothing is left behind on failure. Runs in the caller's mount namespace.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_PROTECT 128

static int refuse(const char *fmt, const char *a, const char *b) {
  fprintf(stderr, "bulkhead-hostmount: ");
  fprintf(stderr, fmt, a, b ? b : "");
  fputc('\n', stderr);
  return 2;
}

static int fail(const char *what, const char *arg) {
  fprintf(stderr, "bulkhead-hostmount: %s %s: %s\n", what, arg ? arg : "", strerror(errno));
  return 1;
}

static int under(const char *path, const char *dir) {
  size_t n = strlen(dir);
  if (strcmp(dir, "/") == 0) return 1;
  return strncmp(path, dir, n) == 0 && (path[n] == 0 || path[n] == '/');
}

static int has_dotdot(const char *p) {
  for (const char *s = p; (s = strstr(s, "..")) != NULL; s += 2)
    if ((s == p || s[-1] == '/') && (s[2] == 0 || s[2] == '/')) return 1;
  return 0;
}

static long openat2_(int dirfd, const char *path, struct open_how *how) {
  return syscall(SYS_openat2, dirfd, path, how, sizeof *how);
}

/* Component by component with O_NOFOLLOW: any symlink is refused (errno ELOOP). */
static int walk_nofollow(int dirfd, const char *rel) {
  char buf[PATH_MAX];
  if (strlen(rel) >= sizeof buf) { errno = ENAMETOOLONG; return -1; }
  strcpy(buf, rel);
  int cur = dup(dirfd);
  if (cur < 0) return -1;
  char *save = NULL;
  for (char *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
    if (strcmp(c, ".") == 0) continue;
    int next = openat(cur, c, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    close(cur);
    if (next < 0) return -1;
    struct stat st;
    if (fstat(next, &st) != 0) { close(next); return -1; }
    if (S_ISLNK(st.st_mode)) { close(next); errno = ELOOP; return -1; }
    cur = next;
  }
  return cur;
}

static int fd_path(int fd, char *out, size_t len) {
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  ssize_t n = readlink(proc, out, len - 1);
  if (n < 0) return -1;
  out[n] = 0;
  return 0;
}

int main(int argc, char **argv) {
  const char *source = NULL, *target = NULL, *beneath = NULL;
  const char *protect[MAX_PROTECT], *allow[MAX_PROTECT];
  int nprotect = 0, nallow = 0, ro = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--ro") == 0) { ro = 1; continue; }
    if (i + 1 >= argc) return refuse("%s needs a value%s", a, NULL);
    const char *v = argv[++i];
    if (strcmp(a, "--source") == 0) source = v;
    else if (strcmp(a, "--target") == 0) target = v;
    else if (strcmp(a, "--beneath") == 0) beneath = v;
    else if (strcmp(a, "--protect") == 0 && nprotect < MAX_PROTECT) protect[nprotect++] = v;
    else if (strcmp(a, "--allow") == 0 && nallow < MAX_PROTECT) allow[nallow++] = v;
    else return refuse("unknown or repeated option %s%s", a, NULL);
  }
  if (!source || !target || source[0] != '/' || target[0] != '/') return refuse("--source and --target must be absolute paths%s%s", "", NULL);
  if (has_dotdot(source)) return refuse("host path %s must not contain \"..\"%s", source, NULL);

  int fd;
  char real[PATH_MAX];
  if (beneath) {
    size_t n = strlen(beneath);
    if (strncmp(source, beneath, n) != 0 || source[n] != '/' || source[n + 1] == 0)
      return refuse("host path %s is not under %s", source, beneath);
    int dfd = open(beneath, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return refuse("host path %s: the pod's directory %s cannot be opened", source, beneath);
    char dreal[PATH_MAX];
    if (fd_path(dfd, dreal, sizeof dreal) != 0) return fail("readlink", beneath);
    const char *rel = source + n + 1;
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    fd = (int)openat2_(dfd, rel, &how);
    if (fd < 0 && errno == ENOSYS) fd = walk_nofollow(dfd, rel);
    if (fd < 0) {
      if (errno == EXDEV || errno == ELOOP) return refuse("host path %s leads out of the pod's directory %s through a symlink", source, beneath);
      return fail("open", source);
    }
    if (fd_path(fd, real, sizeof real) != 0) return fail("readlink", source);
    if (!under(real, dreal) || strcmp(real, dreal) == 0) return refuse("host path %s resolves outside the pod's directory %s", source, beneath);
    close(dfd);
  } else {
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_NO_MAGICLINKS};
    fd = (int)openat2_(AT_FDCWD, source, &how);
    if (fd < 0 && errno == ENOSYS) fd = open(source, O_PATH | O_CLOEXEC);
    if (fd < 0) return fail("open", source);
    if (fd_path(fd, real, sizeof real) != 0) return fail("readlink", source);
    if (real[0] != '/') return refuse("host path %s is not a path on the host's file system%s", source, NULL);
    for (int i = 0; i < nprotect; i++) {
      const char *p = protect[i];
      int hit = strcmp(p, "/") == 0 ? strcmp(real, "/") == 0 : (under(real, p) || under(p, real));
      if (hit) {
        fprintf(stderr, "bulkhead-hostmount: host path %s resolves to %s, which %s the protected path %s\n", source, real,
                strcmp(real, p) == 0 ? "is" : under(p, real) ? "contains" : "is under", p);
        return 2;
      }
    }
  }

  if (!beneath && nallow > 0) {
    int ok = 0;
    for (int i = 0; i < nallow && !ok; i++) ok = under(real, allow[i]);
    if (!ok) return refuse("host path %s resolves to %s, which is not under a path the pod's level allows", source, real);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) return fail("fstat", source);
  if (S_ISDIR(st.st_mode)) {
    if (mkdir(target, 0700) != 0 && errno != EEXIST) return fail("mkdir", target);
  } else {
    int t = open(target, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (t < 0) return fail("create", target);
    close(t);
  }
  struct stat tst;
  if (lstat(target, &tst) != 0 || S_ISLNK(tst.st_mode) || S_ISDIR(tst.st_mode) != S_ISDIR(st.st_mode)) {
    return refuse("staging point %s is not what was created%s", target, NULL);
  }
  char proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  if (mount(proc, target, NULL, MS_BIND | MS_REC, NULL) != 0) {
    int e = errno;
    S_ISDIR(st.st_mode) ? rmdir(target) : unlink(target);
    errno = e;
    return fail("bind mount", source);
  }
  /* a bind remount sets every per-mount flag: keep the source's nosuid/nodev/noexec */
  struct statvfs vfs;
  unsigned long keep = 0;
  if (ro && fstatvfs(fd, &vfs) == 0) {
    if (vfs.f_flag & ST_NOSUID) keep |= MS_NOSUID;
    if (vfs.f_flag & ST_NODEV) keep |= MS_NODEV;
    if (vfs.f_flag & ST_NOEXEC) keep |= MS_NOEXEC;
  }
  if (ro && mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | keep, NULL) != 0) {
    int e = errno;
    umount2(target, MNT_DETACH);
    S_ISDIR(st.st_mode) ? rmdir(target) : unlink(target);
    errno = e;
    return fail("read-only remount", target);
  }
  printf("%s\n", real);
  return 0;
}
