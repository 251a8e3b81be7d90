/*
 * bulkhead-vm-shim: runs on the HOST, one per container (and per detached or terminal exec) of a
 * microVM pod. It is the process whose pid stands for the process in the guest: conmon (or a shell)
 * waits on it as on runc's container init. It holds the stdio it was given (pipes from conmon, or
 * the terminal bulkhead-vm-console made), relays them to the guest session through the pod's VM
 * supervisor (vmd.ts, frames of protocol.ts over <podDir>/vmd.sock), and exits with the guest
 * process's exit code; when the VM goes away instead it records the reason and exits 255.
 * A small static C program (not a Node.js process) so an idle pod costs almost nothing here.
 *
 *   usage: bulkhead-vm-shim [options] SOCKET REQUEST_FILE
 *     SOCKET          the supervisor's socket; relative paths resolve against the cwd (bulkhead-vm
 *                     starts the shim in the pod dir, so the pod dir never appears on its command
 *                     line: pod-process sweeps that find processes by command line leave it alone)
 *     REQUEST_FILE    the JSON request ({"op":"create"|"exec",...}) sent as-is
 *     --exec          an exec session (else a container's): failures exit 126 (else 125)
 *     --tty           the session has a terminal: raw mode on a terminal stdin, window sizes relayed
 *     --rm-request    remove REQUEST_FILE once read
 *     --exit-file F   container: write {code, reason?, at} to F (atomically) when the process ends
 *     --pid-file F    exec: write our pid to F once the process started
 *     --ready-fd N    report `ok PID` or `error {json}` on fd N (ready.ts); without it errors go to stderr
 *     --parent PID    die with PID (PR_SET_PDEATHSIG): a foreground exec goes when its caller goes
 * Exit: the guest process's code; 255 when the VM went away; 125/126 when the session never started.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define HDR 9
#define MAX_PAYLOAD (1u << 20)
#define VM_GONE_EXIT 255
#define KNOWN_TYPES "HAFORXCSEIKWDTPVQBZN"

static int sock = -1, ready_fd = -1, is_exec, tty, raw_set, out_ok = 1, err_ok = 1;
static struct termios saved_tio;
static uint32_t gid;
static const char *exit_file, *pid_file;

static int write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) { if (errno == EINTR) continue; return -1; }
    p += w; n -= (size_t)w;
  }
  return 0;
}

static void say(const char *a, const char *b) {
  if (!err_ok) return;
  if (write_all(2, "bulkhead-vm: ", 13) || write_all(2, a, strlen(a)) || (b && write_all(2, b, strlen(b))) || write_all(2, "\n", 1)) err_ok = 0;
}

static int send_frame(char type, uint32_t id, const void *p, uint32_t len) {
  unsigned char h[HDR];
  h[0] = (unsigned char)type;
  h[1] = id >> 24; h[2] = id >> 16; h[3] = id >> 8; h[4] = id;
  h[5] = len >> 24; h[6] = len >> 16; h[7] = len >> 8; h[8] = len;
  if (write_all(sock, h, HDR)) return -1;
  return len ? write_all(sock, p, len) : 0;
}

/* A JSON string literal for s (quotes included), into out (size n); truncated safely. */
static void json_str(const char *s, char *out, size_t n) {
  size_t o = 0;
  out[o++] = '"';
  for (; *s && o + 8 < n; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') { out[o++] = '\\'; out[o++] = (char)c; }
    else if (c < 0x20) o += (size_t)snprintf(out + o, n - o, "\\u%04x", c);
    else out[o++] = (char)c;
  }
  out[o++] = '"';
  out[o] = 0;
}

/* The raw JSON string literal of "key" in a flat JSON object (quotes included), or NULL. */
static const char *json_field(const char *js, size_t len, const char *key, size_t *litlen) {
  char pat[64];
  int pl = snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = memmem(js, len, pat, (size_t)pl);
  if (!p) return NULL;
  p += pl;
  while (p < js + len && *p == ' ') p++;
  if (p >= js + len || *p != '"') return NULL;
  const char *q = p + 1;
  while (q < js + len && *q != '"') { if (*q == '\\') q++; q++; }
  if (q >= js + len) return NULL;
  *litlen = (size_t)(q - p + 1);
  return p;
}

/* Unescapes a JSON string literal (quotes included) into out (size n): \uXXXX as UTF-8 (BMP). */
static void json_unescape(const char *lit, size_t len, char *out, size_t n) {
  size_t o = 0;
  for (size_t i = 1; i + 1 < len && o + 4 < n; i++) {
    char c = lit[i];
    if (c != '\\') { out[o++] = c; continue; }
    c = lit[++i];
    switch (c) {
      case 'n': out[o++] = '\n'; break;
      case 't': out[o++] = '\t'; break;
      case 'r': out[o++] = '\r'; break;
      case 'b': case 'f': break;
      case 'u': {
        if (i + 4 >= len) { i = len; break; }
        char hex[5] = { lit[i + 1], lit[i + 2], lit[i + 3], lit[i + 4], 0 };
        unsigned v = (unsigned)strtoul(hex, NULL, 16);
        i += 4;
        if (v < 0x80) out[o++] = (char)v;
        else if (v < 0x800) { out[o++] = (char)(0xc0 | (v >> 6)); out[o++] = (char)(0x80 | (v & 0x3f)); }
        else { out[o++] = (char)(0xe0 | (v >> 12)); out[o++] = (char)(0x80 | ((v >> 6) & 0x3f)); out[o++] = (char)(0x80 | (v & 0x3f)); }
        break;
      }
      default: out[o++] = c;
    }
  }
  out[o] = 0;
}

static long json_int(const char *js, size_t len, const char *key) {
  char pat[64];
  int pl = snprintf(pat, sizeof pat, "\"%s\":", key);
  const char *p = memmem(js, len, pat, (size_t)pl);
  if (!p) return -1;
  return strtol(p + pl, NULL, 10);
}

static void restore_tty(void) {
  if (raw_set) { tcsetattr(0, TCSANOW, &saved_tio); raw_set = 0; }
}

/* The ready line (ready.ts): `ok PID` or `error {code, reason, message}`; without a ready fd errors go to stderr. */
static void ready_ok(void) {
  if (ready_fd < 0) return;
  char line[32];
  int n = snprintf(line, sizeof line, "ok %d\n", (int)getpid());
  write_all(ready_fd, line, (size_t)n);
  close(ready_fd);
  ready_fd = -1;
}

/* wire: a WireError JSON object, or NULL to build {code, reason?, message} from the others. */
static int ready_error(const char *wire, size_t wlen, const char *code, const char *reason, const char *message) {
  char buf[4096];
  if (!wire) {
    char m[3000];
    json_str(message, m, sizeof m);
    int n = snprintf(buf, sizeof buf, "{\"code\":\"%s\"%s%s%s,\"message\":%s}", code, reason ? ",\"reason\":\"" : "", reason ? reason : "", reason ? "\"" : "", m);
    wire = buf; wlen = (size_t)n;
  }
  if (ready_fd >= 0) {
    write_all(ready_fd, "error ", 6);
    write_all(ready_fd, wire, wlen);
    write_all(ready_fd, "\n", 1);
    close(ready_fd);
    ready_fd = -1;
  } else {
    size_t ll;
    const char *lit = json_field(wire, wlen, "message", &ll);
    char m[4096];
    if (lit) json_unescape(lit, ll, m, sizeof m); else snprintf(m, sizeof m, "the VM supervisor failed the request");
    say(m, NULL);
  }
  restore_tty();
  return is_exec ? 126 : 125;
}

/* exit.json for `state`: {code, reason?, at}, written next to its name and renamed into place. */
static void write_exit(int code, const char *reason_lit, size_t rlen) {
  if (!exit_file) return;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char at[40];
  strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%S", &tm);
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", exit_file);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;
  char head[64];
  int n = snprintf(head, sizeof head, "{\"code\":%d", code);
  int bad = write_all(fd, head, (size_t)n);
  if (reason_lit) bad |= write_all(fd, ",\"reason\":", 10) || write_all(fd, reason_lit, rlen);
  n = snprintf(head, sizeof head, ",\"at\":\"%s.%03ldZ\"}", at, ts.tv_nsec / 1000000);
  bad |= write_all(fd, head, (size_t)n);
  close(fd);
  if (bad || rename(tmp, exit_file) != 0) unlink(tmp);
}

static void send_size(void) {
  struct winsize ws;
  if (!gid || !tty || !isatty(1) || ioctl(1, TIOCGWINSZ, &ws) != 0 || ws.ws_row == 0) return;
  char b[32];
  int n = snprintf(b, sizeof b, "%u %u", ws.ws_row, ws.ws_col);
  send_frame('W', gid, b, (uint32_t)n);
}

/* The VM (or its supervisor) went away before the process's exit: record why, exit 255. */
static int gone(const char *reason_lit, size_t rlen, const char *reason, int answered) {
  char lit[4096];
  if (!reason_lit) { json_str(reason, lit, sizeof lit); reason_lit = lit; rlen = strlen(lit); }
  char text[4096];
  json_unescape(reason_lit, rlen, text, sizeof text);
  say(text, NULL);
  if (!answered) {
    char m[4200];
    snprintf(m, sizeof m, "pod VM gone: %s", text);
    return ready_error(NULL, 0, "Unavailable", "BH_VM_GONE", m);
  }
  if (!is_exec) write_exit(VM_GONE_EXIT, reason_lit, rlen);
  restore_tty();
  return VM_GONE_EXIT;
}

static int usage(void) {
  fprintf(stderr, "usage: bulkhead-vm-shim [--exec] [--tty] [--rm-request] [--exit-file F] [--pid-file F] [--ready-fd N] [--parent PID] SOCKET REQUEST_FILE\n");
  return 125;
}

int main(int argc, char **argv) {
  int rm_request = 0;
  long parent = 0;
  int i = 1;
  for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--exec")) is_exec = 1;
    else if (!strcmp(a, "--tty")) tty = 1;
    else if (!strcmp(a, "--rm-request")) rm_request = 1;
    else if (i + 1 < argc && !strcmp(a, "--exit-file")) exit_file = argv[++i];
    else if (i + 1 < argc && !strcmp(a, "--pid-file")) pid_file = argv[++i];
    else if (i + 1 < argc && !strcmp(a, "--ready-fd")) ready_fd = atoi(argv[++i]);
    else if (i + 1 < argc && !strcmp(a, "--parent")) parent = atol(argv[++i]);
    else return usage();
  }
  if (argc - i != 2) return usage();
  const char *sock_path = argv[i], *req_path = argv[i + 1];
  signal(SIGPIPE, SIG_IGN);
  if (parent > 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != (pid_t)parent) return 125;
  }

  /* the request, bounded by the frame size */
  int rf = open(req_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (rf < 0) { char m[512]; snprintf(m, sizeof m, "cannot read the session request %s: %s", req_path, strerror(errno)); return ready_error(NULL, 0, "Internal", NULL, m); }
  char *req = malloc(MAX_PAYLOAD);
  size_t reqlen = 0;
  for (ssize_t r; reqlen < MAX_PAYLOAD && (r = read(rf, req + reqlen, MAX_PAYLOAD - reqlen)) != 0;) {
    if (r < 0) { if (errno == EINTR) continue; break; }
    reqlen += (size_t)r;
  }
  close(rf);
  if (rm_request) unlink(req_path);
  if (reqlen == 0 || reqlen >= MAX_PAYLOAD) return ready_error(NULL, 0, "Internal", NULL, "the session request is empty or too large");

  /* connect to the pod's supervisor, then leave the pod dir (never hold it as cwd) */
  sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  if (strlen(sock_path) >= sizeof addr.sun_path) return ready_error(NULL, 0, "InvalidArgument", NULL, "the supervisor socket path is too long");
  strcpy(addr.sun_path, sock_path);
  if (sock < 0 || connect(sock, (struct sockaddr *)&addr, sizeof addr) != 0) {
    char cwd[1024], m[1400];
    const char *en = strerrorname_np(errno);
    if (sock_path[0] == '/' || !getcwd(cwd, sizeof cwd)) cwd[0] = 0;
    snprintf(m, sizeof m, "the pod VM is not running (%s%s%s: %s)", cwd, cwd[0] ? "/" : "", sock_path, en ? en : strerror(errno));
    return ready_error(NULL, 0, "Unavailable", NULL, m);
  }
  if (chdir("/") != 0) { /* keep going: the cwd only matters for the connect */ }

  if (tty && isatty(0) && tcgetattr(0, &saved_tio) == 0) {
    /* raw, as libuv's UV_TTY_MODE_RAW (what the Node.js shim used) */
    struct termios t = saved_tio;
    t.c_iflag &= ~(tcflag_t)(BRKINT | ICRNL | INPCK | ISTRIP | IXON);
    t.c_oflag |= ONLCR;
    t.c_cflag |= CS8;
    t.c_lflag &= ~(tcflag_t)(ECHO | ICANON | IEXTEN | ISIG);
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    if (tcsetattr(0, TCSADRAIN, &t) == 0) raw_set = 1;
  }
  int sfd = -1;
  if (tty) {
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGWINCH);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    sfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);
  }

  if (send_frame('Q', 1, req, (uint32_t)reqlen)) return gone(NULL, 0, "the VM supervisor went away (its process is gone)", 0);
  free(req);

  unsigned char *buf = malloc(HDR + MAX_PAYLOAD);
  size_t have = 0;
  int answered = 0, started = 0, stdin_open = 1, exited = -1;
  static char inbuf[65536];
  while (exited < 0) {
    struct pollfd p[3] = { { sock, POLLIN, 0 }, { 0, POLLIN, 0 }, { sfd, POLLIN, 0 } };
    p[1].fd = started && stdin_open ? 0 : -1;
    if (poll(p, 3, -1) < 0) { if (errno == EINTR) continue; return gone(NULL, 0, "poll failed", answered); }
    if (p[2].revents & POLLIN) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) { }
      send_size();
    }
    if (p[1].revents) {
      ssize_t r = read(0, inbuf, sizeof inbuf);
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) { /* again */ }
      else if (r <= 0) { stdin_open = 0; if (!tty) send_frame('I', gid, NULL, 0); }
      else send_frame('I', gid, inbuf, (uint32_t)r);
    }
    if (!p[0].revents) continue;
    ssize_t r = read(sock, buf + have, HDR + MAX_PAYLOAD - have);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return gone(NULL, 0, "the VM supervisor went away (its process is gone)", answered);
    have += (size_t)r;
    size_t off = 0;
    while (have - off >= HDR) {
      unsigned char *f = buf + off;
      uint32_t id = (uint32_t)f[1] << 24 | (uint32_t)f[2] << 16 | (uint32_t)f[3] << 8 | f[4];
      uint32_t len = (uint32_t)f[5] << 24 | (uint32_t)f[6] << 16 | (uint32_t)f[7] << 8 | f[8];
      if (!f[0] || !strchr(KNOWN_TYPES, f[0])) return gone(NULL, 0, "vm supervisor protocol violation: unknown frame type", answered);
      if (len > MAX_PAYLOAD) return gone(NULL, 0, "vm supervisor protocol violation: oversized frame", answered);
      if (have - off < HDR + len) break;
      const char *pl = (const char *)f + HDR;
      off += HDR + len;
      switch (f[0]) {
        case 'A': {
          if (answered || id != 1) break;
          answered = 1;
          long g = json_int(pl, len, "id");
          if (g <= 0) return ready_error(NULL, 0, "Internal", NULL, "the VM supervisor answered without a session id");
          gid = (uint32_t)g;
          if (is_exec) {
            started = 1;
            send_size();
            if (pid_file) {
              char b[16];
              int n = snprintf(b, sizeof b, "%d", (int)getpid());
              int fd = open(pid_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
              if (fd >= 0) { write_all(fd, b, (size_t)n); close(fd); }
            }
          }
          ready_ok();
          break;
        }
        case 'F':
          if (answered || id != 1) break;
          if (len == 0 || pl[0] != '{' || memchr(pl, '\n', len)) return ready_error(NULL, 0, "Internal", NULL, "the VM supervisor failed the request without a reason");
          return ready_error(pl, len, NULL, NULL, NULL);
        case 'V': {
          size_t ll;
          const char *lit = json_field(pl, len, "reason", &ll);
          return gone(lit, ll, "VM gone", answered);
        }
        /* data frames: this connection owns one session, so they are its (the id is the session's) */
        case 'B':
          if (!gid) gid = id;
          if (!started) { started = 1; send_size(); }
          break;
        case 'O':
          if (len && out_ok && write_all(1, pl, len)) out_ok = 0;
          break;
        case 'R':
          if (len && err_ok && write_all(2, pl, len)) err_ok = 0;
          break;
        case 'X': {
          char num[16];
          size_t n = len < sizeof num - 1 ? len : sizeof num - 1;
          memcpy(num, pl, n);
          num[n] = 0;
          exited = (int)(strtol(num, NULL, 10) & 0xff);
          break;
        }
        default:
          return gone(NULL, 0, "vm supervisor protocol violation: unexpected frame", answered);
      }
      if (exited >= 0) break;
    }
    memmove(buf, buf + off, have - off);
    have -= off;
  }
  if (!is_exec) write_exit(exited, NULL, 0);
  restore_tty();
  return exited;
}
