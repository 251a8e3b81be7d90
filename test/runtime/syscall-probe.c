/*
 * The strict handler's attack probe: system calls a workload's profile never allows (and Bulkhead's
 * default profile denies too), each printed as "NAME RESULT" (OK or the errno's name).
 * Never run it on the host: unshare + mount would succeed as root.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
  struct { const char *name; long nr; long a0, a1, a2, a3, a4; } calls[] = {
    {"unshare", SYS_unshare, 0x00020000 /* CLONE_NEWNS */, 0, 0, 0, 0},
    {"mount", SYS_mount, (long)"none", (long)"/tmp", (long)"tmpfs", 0, 0},
    {"keyctl", SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0, 0, 0},
    {"bpf", SYS_bpf, 0, 0, 0, 0, 0},
    {"ptrace", SYS_ptrace, 0x4206 /* PTRACE_SEIZE */, 1, 0, 0, 0},
    {"io_uring_setup", SYS_io_uring_setup, 1, 0, 0, 0, 0},
  };
  for (unsigned i = 0; i < sizeof calls / sizeof calls[0]; i++) {
    errno = 0;
    long r = syscall(calls[i].nr, calls[i].a0, calls[i].a1, calls[i].a2, calls[i].a3, calls[i].a4);
    printf("%s %s\n", calls[i].name, r == -1 ? strerrorname_np(errno) : "OK");
  }
  return 0;
}
