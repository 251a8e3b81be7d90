/*
 * bulkhead-vm-console: runs on the HOST. Used by `bulkhead-vm create --console-socket SOCK` for
 * containers with a terminal: opens a pseudo-terminal, sends its master to SOCK (SCM_RIGHTS, the
 * protocol conmon and podman expect from an OCI runtime), makes the slave the controlling terminal
 * and stdin/stdout/stderr, then execs the rest of the command line (the container supervisor).
 *   usage: bulkhead-vm-console SOCK ROWS COLS -- COMMAND [ARGS...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

static int fail(const char *what) {
  fprintf(stderr, "bulkhead-vm-console: %s: %s\n", what, strerror(errno));
  return 125;
}

int main(int argc, char **argv) {
  if (argc < 6 || strcmp(argv[4], "--") != 0) {
    fprintf(stderr, "usage: bulkhead-vm-console SOCK ROWS COLS -- COMMAND [ARGS...]\n");
    return 125;
  }
  int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0) return fail("open pty");
  const char *name = ptsname(m);
  if (!name) return fail("ptsname");
  struct winsize ws = { 0 };
  ws.ws_row = (unsigned short)atoi(argv[2]);
  ws.ws_col = (unsigned short)atoi(argv[3]);
  if (ws.ws_row && ws.ws_col) ioctl(m, TIOCSWINSZ, &ws);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return fail("socket");
  struct sockaddr_un addr = { 0 };
  addr.sun_family = AF_UNIX;
  if (strlen(argv[1]) >= sizeof addr.sun_path) { fprintf(stderr, "bulkhead-vm-console: socket path too long\n"); return 125; }
  strcpy(addr.sun_path, argv[1]);
  if (connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) return fail("connect console socket");
  char cbuf[CMSG_SPACE(sizeof(int))];
  memset(cbuf, 0, sizeof cbuf);
  struct iovec iov = { (void *)name, strlen(name) };
  struct msghdr msg = { 0 };
  msg.msg_iov = &iov; msg.msg_iovlen = 1;
  msg.msg_control = cbuf; msg.msg_controllen = sizeof cbuf;
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET; c->cmsg_type = SCM_RIGHTS; c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &m, sizeof(int));
  if (sendmsg(s, &msg, 0) < 0) return fail("send pty master");
  close(s);
  int sl = open(name, O_RDWR | O_NOCTTY);
  if (sl < 0) return fail("open pty slave");
  close(m);
  setsid();
  if (ioctl(sl, TIOCSCTTY, 0) != 0) return fail("set controlling terminal");
  for (int i = 0; i < 3; i++) if (dup2(sl, i) < 0) return fail("dup2");
  if (sl > 2) close(sl);
  execvp(argv[5], argv + 5);
  return fail("exec supervisor");
}
