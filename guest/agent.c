/*
 * bulkhead guest agent: PID 1 of a Bulkhead microVM (started by /init after the modules are loaded).
 *
 * It speaks one framed protocol over the virtio-serial port named "bulkhead.agent":
 *   frame = type (1 byte) | id (u32 big endian) | length (u32 big endian) | payload
 * Host -> guest:  C create container (kv payload)   S start    E exec (kv payload, parent=ID)
 *                 I stdin bytes (length 0 = EOF)    K signal ("SIG" or "SIG all")
 *                 W window size ("ROWS COLS")       D delete   T stats   P power off
 *                 U identity (kv: entropy=HEX time=SEC.NSEC hostname= mac= addr=IP/LEN gw= mtu=): a VM
 *                   restored from a template makes itself unique; answered A with the hello text and
 *                   " random=HEX" (the first 32 bytes of its reseeded pool). sb=ID names the template's
 *                   sandbox container (running): sb_hostname= is set in its UTS namespace, sb_hostname=,
 *                   sb_hostname_file=, sb_resolv=, sb_hosts= written on its root as create writes them
 *                 Y copied volume (protocol 8): payload = u32 BE header length | kv header | data; op=init
 *                   dir=GID size=BYTES mounts a tmpfs at /run/cv/GID; op=put dir=GID/N path=REL type=d|f|l
 *                   (a single-file volume is REL "f")
 *                   mode=OCTAL [off= end=1 | target=] writes one entry of volume N (a file in chunks into a
 *                   temporary, renamed into place at end=1; a symlink renamed over the old one: each
 *                   replacement atomic); op=del removes one entry; op=get answers A with the last 4096
 *                   bytes of a file (the termination log). Create's cvol=REL\x1fDEST\x1fro|rw\x1fd|f\x1fP binds
 *                   /run/cv/REL (REL ed/KEY: a pod-wide guest directory, made on first use: an emptyDir);
 *                   op=ed dir=KEY size=BYTES (protocol 9) makes /run/cv/ed/KEY a tmpfs of that size
 *                   (an emptyDir whose size the host knows), once per pod: a later one for KEY is a no-op
 * Guest -> host:  H hello ("bulkhead-agent 7 KERNEL"; 2 = applies PID ns, caps, seccomp; 3 = volumes; 4 = pod sysctls; 5 = shared IPC/UTS/PID namespaces; 6 = identity after a restore; 7 = a template's sandbox container in it; 8 = copied volumes; 9 = a sized copied emptyDir) A ok (payload)  F failure (message)
 *                 O stdout bytes  R stderr bytes (length 0 = EOF)      X exit ("STATUS")
 * kv payload: "key=value\0" repeated; arg, env and gid may repeat and keep their order.
 * S and E are answered once the process has exec'd (A "PID") or failed before it (F), from the main
 * loop: a process that blocks or is stopped before its exec never stops the agent. start_wait_ms=MS
 * in the create / exec request bounds that wait (else 60 s); past it the process is killed and the
 * start fails. Frames to the host are queued and written as the port takes them (never blocking),
 * and the port is looked at again at least every PORT_RECHECK_MS.
 * Every request is answered with A or F carrying the request's id. Output of a process is
 * always sent before its X frame. Anything malformed is answered with F and dropped.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <linux/random.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <linux/seccomp.h>
#include <linux/vm_sockets.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#define MAX_PAYLOAD (1u << 20)
#define MAX_SESS 256
#define MAX_ARGS 1024
#define AGENT_PROTOCOL 9
/* Copied volumes (Y): /run/cv/GID/N per container volume (a tmpfs per container), /run/cv/ed/KEY per emptyDir. */
#define CV_DIR "/run/cv"
#define CV_GET_MAX 4096

extern char **environ;

struct buf { char *p; size_t len, cap; };

struct sess {
  int used;
  uint32_t id;
  int is_exec;
  uint32_t parent;
  pid_t pid;
  int started, exited, status;
  int tty;
  int in_fd, out_fd, err_fd; /* host-side ends; with tty, out_fd == in_fd == pty master */
  int in_eof;
  struct buf inq;
  char slot[32];
  int readonly;
  unsigned long long mem_limit;
  unsigned long long cpu_quota, cpu_period, pids_max;
  char *kv; size_t kvlen; /* the create / exec request, kept until start */
  int pending_sig; /* a stop signal its PID 1 would have dropped (no handler yet): sent again once it has one */
  /* A start whose answer waits for the process's exec (its exec-error pipe closing, or a failure on
   * it), in the main loop: `starting` until then, bounded by start_until (CLOCK_MONOTONIC ms). */
  int starting;
  int ep_fd;
  size_t ep_got;
  long long start_until;
  char ep_err[1024];
};

static struct sess sessions[MAX_SESS];
static int port = -1;
/*
 * Frames for the host wait here and leave as the port takes them (it is non-blocking): a host that
 * does not read (its supervisor pauses the channel while one client is slow) never stops the agent,
 * which goes on reaping, signalling and starting. Process output is read only while less than
 * OUTQ_PUMP_MAX waits (the rest stays in its pipe or pty, as a full pipe holds its writer), and host
 * requests only while less than OUTQ_READ_MAX waits (their answers are what grows the queue then).
 */
static struct buf outq;
#define OUTQ_PUMP_MAX (256u << 10)
#define OUTQ_READ_MAX (4u << 20)
/* How long a start may wait for its process's exec unless the request says (start_wait_ms=MS). */
#define START_WAIT_MS 60000u
/*
 * The longest the agent sleeps without looking at the port again. poll() on a virtio-serial port
 * sleeps until the driver's interrupt handler wakes it, and each poll() looks at the virtqueues
 * itself; a wakeup that never comes (a lost notification, as seen with virtio-console under a
 * starved VMM) would leave a request — or room to write — unseen for ever while the guest idles,
 * the answer never sent. Looking again every PORT_RECHECK_MS turns that into a delay.
 */
#define PORT_RECHECK_MS 1000
static unsigned missed_wakeups;
static unsigned long long read_ull(const char *path, const char *key);
static long long start_wait_ms(const struct sess *s);
static int own_pidns = -1; /* the agent's PID namespace, to return to after forking into a container's */
static int own_utsns = -1; /* the agent's UTS namespace, to return to after naming a container's */
static char hello[256];

static void logmsg(const char *fmt, ...) {
  va_list ap;
  int fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
  char line[1024];
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line - 1, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  if (n > (int)sizeof line - 2) n = sizeof line - 2;
  line[n++] = '\n';
  if (fd >= 0) { if (write(fd, "bulkhead-agent: ", 16) < 0 || write(fd, line, n) < 0) {} close(fd); }
}

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Writes what the port takes now; the rest waits for POLLOUT in the main loop. */
static void flush_host(void) {
  size_t off = 0;
  while (off < outq.len) {
    ssize_t w = write(port, outq.p + off, outq.len - off);
    if (w > 0) { off += (size_t)w; continue; }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN) { logmsg("write to host failed: %s (%zu bytes dropped)", strerror(errno), outq.len - off); off = outq.len; }
    break;
  }
  if (off) { memmove(outq.p, outq.p + off, outq.len - off); outq.len -= off; }
  if (!outq.len && outq.cap > (1u << 20)) { free(outq.p); outq.p = NULL; outq.cap = 0; }
}

static int outq_add(const void *p, size_t n) {
  if (outq.len + n > outq.cap) {
    size_t c = outq.cap ? outq.cap : 65536;
    while (c < outq.len + n) c *= 2;
    char *q = realloc(outq.p, c);
    if (!q) return -1;
    outq.p = q; outq.cap = c;
  }
  memcpy(outq.p + outq.len, p, n);
  outq.len += n;
  return 0;
}

static void send_frame(char type, uint32_t id, const void *payload, size_t len) {
  unsigned char h[9];
  h[0] = (unsigned char)type;
  h[1] = id >> 24; h[2] = id >> 16; h[3] = id >> 8; h[4] = id;
  h[5] = len >> 24; h[6] = len >> 16; h[7] = len >> 8; h[8] = len;
  size_t had = outq.len;
  if (outq_add(h, 9) != 0 || (len && outq_add(payload, len) != 0)) { outq.len = had; logmsg("no memory to queue a %zu-byte frame for the host: dropped", len); return; }
  flush_host();
}

static void reply_ok(uint32_t id, const char *msg) { send_frame('A', id, msg, strlen(msg)); }
static void reply_err(uint32_t id, const char *fmt, ...) {
  char m[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m, sizeof m, fmt, ap);
  va_end(ap);
  send_frame('F', id, m, strlen(m));
}

static struct sess *find(uint32_t id) {
  for (int i = 0; i < MAX_SESS; i++) if (sessions[i].used && sessions[i].id == id) return &sessions[i];
  return NULL;
}

/* A container's process runs: started, its start answered (it exec'd), not exited. */
static int running(const struct sess *t) { return t && t->started && !t->starting && !t->exited; }

/* kv lookup: the n-th value of key (n from 0), or NULL. */
static const char *kv_get(const char *kv, size_t len, const char *key, int n) {
  size_t kl = strlen(key);
  const char *p = kv, *end = kv + len;
  while (p < end) {
    size_t l = strnlen(p, (size_t)(end - p));
    if (l > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') { if (n-- == 0) return p + kl + 1; }
    p += l + 1;
  }
  return NULL;
}

/* O_NONBLOCK and O_NOFOLLOW: a FIFO or symlink a running container put at the path (write_etc on a
 * template's sandbox root) must neither stop the agent nor lead it elsewhere. */
static int write_file(const char *path, const char *data) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW, 0644);
  if (fd < 0) return -1;
  size_t n = strlen(data);
  int rc = write(fd, data, n) == (ssize_t)n ? 0 : -1;
  close(fd);
  return rc;
}

static void mkdir_p(const char *path, mode_t mode) {
  /* the directory itself first: most of the time its parent is there (each mkdir is a path walk,
   * kernel code a clone restored from a template runs cold under TCG) */
  if (mkdir(path, mode) == 0 || errno != ENOENT) return;
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++) if (*p == '/') { *p = 0; mkdir(tmp, mode); *p = '/'; }
  mkdir(tmp, mode);
}

static void cgroup_dir(const struct sess *s, char *out, size_t n) {
  snprintf(out, n, "/sys/fs/cgroup/bulkhead/c%u", s->is_exec ? s->parent : s->id);
}

/*
 * The slot devices by serial, found once: a VM's drives never change (no hotplug), and reading a
 * virtio-blk serial is a request to the device (~20 ms of a clone's container create under TCG,
 * measured). The first create fills it; a template's agent did, so its clones start with it.
 */
#define MAX_SLOT_DEVS 32
static struct { char serial[24]; char dev[16]; } slot_devs[MAX_SLOT_DEVS];
static int slot_devs_n = -1;

static void scan_slot_devs(void) {
  slot_devs_n = 0;
  DIR *d = opendir("/sys/block");
  struct dirent *e;
  while (d && (e = readdir(d)) && slot_devs_n < MAX_SLOT_DEVS) {
    if (strncmp(e->d_name, "vd", 2) != 0 || strlen(e->d_name) >= sizeof slot_devs[0].dev - 5) continue;
    char p[300], b[64] = { 0 };
    snprintf(p, sizeof p, "/sys/block/%s/serial", e->d_name);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t r = read(fd, b, sizeof b - 1); close(fd);
    while (r > 0 && (b[r - 1] == '\n' || b[r - 1] == ' ')) b[--r] = 0;
    if (r <= 0 || (size_t)r >= sizeof slot_devs[0].serial) continue;
    snprintf(slot_devs[slot_devs_n].serial, sizeof slot_devs[0].serial, "%s", b);
    snprintf(slot_devs[slot_devs_n].dev, sizeof slot_devs[0].dev, "/dev/%s", e->d_name);
    slot_devs_n++;
  }
  if (d) closedir(d);
}

/* The guest device (/dev/vdX) whose virtio-blk serial is `serial` (the table above; scanned again once when it is not there). */
static int find_slot_dev(const char *serial, char *out, size_t n) {
  for (int pass = 0; pass < 2; pass++) {
    if (slot_devs_n < 0 || pass == 1) scan_slot_devs();
    for (int i = 0; i < slot_devs_n; i++) {
      if (strcmp(slot_devs[i].serial, serial) == 0 && access(slot_devs[i].dev, F_OK) == 0) { snprintf(out, n, "%s", slot_devs[i].dev); return 0; }
    }
  }
  /* No serials (Firecracker): slotN is the N-th virtio disk. */
  if (strncmp(serial, "slot", 4) == 0 && serial[4] >= '0' && serial[4] <= '9' && !serial[5]) {
    snprintf(out, n, "/dev/vd%c", 'a' + (serial[4] - '0'));
    if (access(out, F_OK) == 0) return 0;
  }
  return -1;
}

/*
 * `name` under the container root `root` as the container will see it: symlinks in the image are
 * resolved inside `root` (RESOLVE_IN_ROOT: `/etc -> /run` is root/run, never the guest's /run, and
 * no `..` climbs out), magic links refused. Opened with `flags` (O_PATH, O_RDONLY; O_DIRECTORY to
 * want a directory); -1 with errno when it cannot be.
 */
static int in_root(const char *root, const char *name, int flags) {
  int rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (rfd < 0) return -1;
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = (uint64_t)(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  int fd = (int)syscall(SYS_openat2, rfd, name, &how, sizeof how);
  int e = errno;
  close(rfd);
  errno = e;
  return fd;
}

/* Files the runtime provides: resolv.conf, hosts, hostname (on the writable layer only), from kv
 * keys `prefix`resolv etc. The pod's /etc/hostname file ("hostname_file") wins over the container's
 * own UTS name: an app container joining the pod's UTS namespace has no name of its own but gets
 * the pod's file. */
static void write_etc(const char *root, const char *kv, size_t len, const char *prefix) {
  const char *names[] = { "resolv", "resolv.conf", "hosts", "hosts", "hostname", "hostname", "hostname_file", "hostname" };
  const char *v;
  int efd = -1;
  for (int i = 0; i < 8; i += 2) {
    char key[64];
    snprintf(key, sizeof key, "%s%s", prefix, names[i]);
    if (!(v = kv_get(kv, len, key, 0))) continue;
    if (efd < 0) {
      char p[400];
      snprintf(p, sizeof p, "%s/etc", root); mkdir(p, 0755); /* never follows an image's symlink there */
      if ((efd = in_root(root, "etc", O_PATH | O_DIRECTORY)) < 0) { logmsg("write %s/etc: %s", root, strerror(errno)); return; }
    }
    /* relative to the container's /etc as the container resolves it: an image whose /etc is a
     * symlink (to /run, say) gets the files in its own tree, never in the guest's */
    unlinkat(efd, names[i + 1], 0);
    int fd = openat(efd, names[i + 1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW, 0644);
    size_t n = strlen(v);
    int nl = i >= 4 && n > 0 && v[n - 1] != '\n';
    if (fd < 0 || write(fd, v, n) != (ssize_t)n || (nl && write(fd, "\n", 1) != 1)) logmsg("write %s/etc/%s: %s", root, names[i + 1], strerror(errno));
    if (fd >= 0) close(fd);
  }
  if (efd >= 0) close(efd);
}

/*
 * The upper layer's copy of the image's directory `name` (etc, tmp), made before the overlay is
 * mounted, as a copy-up would make it (the image's mode and owner; 0755 root when the image has
 * none): the runtime's /etc files are then written on the tmpfs, and start's chmod of /tmp finds it
 * there. Through the mounted overlay the same writes copy the directory up and white out the
 * image's files, overlay paths a fresh clone runs with a cold translation cache under TCG. 0 when
 * made; -1 when the image's entry is not a plain directory (a symlink: the caller writes through
 * the overlay, as before) or the upper's could not be made.
 */
static int upper_dir(const char *lower, const char *upper, const char *name, mode_t add) {
  char p[400];
  struct stat st;
  snprintf(p, sizeof p, "%s/%s", lower, name);
  if (lstat(p, &st) != 0) {
    if (errno != ENOENT) return -1;
    st.st_mode = S_IFDIR | 0755; st.st_uid = 0; st.st_gid = 0;
  } else if (!S_ISDIR(st.st_mode)) return -1;
  snprintf(p, sizeof p, "%s/%s", upper, name);
  if (mkdir(p, 0700) != 0) return -1;
  if (chown(p, st.st_uid, st.st_gid) != 0 || chmod(p, (st.st_mode & 07777) | add) != 0) { rmdir(p); return -1; }
  return 0;
}

/* C: mount the container's root (read-only block device + tmpfs upper in an overlay) and its cgroup. */
static void do_create(uint32_t id, char *kv, size_t len) {
  if (find(id)) { reply_err(id, "session %u exists", id); free(kv); return; }
  struct sess *s = NULL;
  for (int i = 0; i < MAX_SESS; i++) if (!sessions[i].used) { s = &sessions[i]; break; }
  if (!s) { reply_err(id, "too many sessions"); free(kv); return; }
  const char *slot = kv_get(kv, len, "slot", 0);
  if (!slot || strchr(slot, '/') || strlen(slot) >= sizeof s->slot) { reply_err(id, "create: bad or missing slot"); free(kv); return; }
  if (!kv_get(kv, len, "arg", 0)) { reply_err(id, "create: no process args"); free(kv); return; }
  memset(s, 0, sizeof *s);
  s->id = id; s->kv = kv; s->kvlen = len;
  snprintf(s->slot, sizeof s->slot, "%s", slot);
  const char *v;
  s->readonly = (v = kv_get(kv, len, "readonly", 0)) && strcmp(v, "1") == 0;
  s->tty = (v = kv_get(kv, len, "tty", 0)) && strcmp(v, "1") == 0;
  s->mem_limit = (v = kv_get(kv, len, "memory", 0)) ? strtoull(v, NULL, 10) : 0;
  s->cpu_quota = (v = kv_get(kv, len, "cpu_quota", 0)) ? strtoull(v, NULL, 10) : 0;
  s->cpu_period = (v = kv_get(kv, len, "cpu_period", 0)) ? strtoull(v, NULL, 10) : 100000;
  s->pids_max = (v = kv_get(kv, len, "pids", 0)) ? strtoull(v, NULL, 10) : 0;

  char dir[256], lower[300], rw[300], upper[320], work[320], root[300], dev[64];
  if (find_slot_dev(s->slot, dev, sizeof dev) != 0) { reply_err(id, "create: no block device with serial %s", s->slot); free(kv); return; }
  snprintf(dir, sizeof dir, "/run/c/%u", id);
  snprintf(lower, sizeof lower, "%s/lower", dir);
  snprintf(rw, sizeof rw, "%s/rw", dir);
  snprintf(root, sizeof root, "%s/root", dir);
  mkdir_p(lower, 0700); mkdir_p(rw, 0700); mkdir_p(root, 0755);
  /* The host wrote this slot after the kernel may have probed it: drop any cached blocks first. */
  { int bfd = open(dev, O_RDONLY | O_CLOEXEC); if (bfd >= 0) { ioctl(bfd, BLKFLSBUF, 0); close(bfd); } }
  const char *fstype = (v = kv_get(kv, len, "fstype", 0)) ? v : "ext4";
  if (mount(dev, lower, fstype, MS_RDONLY | MS_NODEV, strcmp(fstype, "ext4") == 0 ? "noload" : "") != 0) {
    reply_err(id, "mount %s (%s) on %s: %s", dev, fstype, lower, strerror(errno));
    free(kv); return;
  }
  if (s->readonly) {
    if (mount(lower, root, NULL, MS_BIND, NULL) != 0) { reply_err(id, "bind root: %s", strerror(errno)); umount2(lower, MNT_DETACH); free(kv); return; }
  } else {
    char opts[1200];
    const char *size = (v = kv_get(kv, len, "rw_size", 0)) ? v : "50%";
    snprintf(opts, sizeof opts, "size=%s,mode=0755", size);
    if (mount("tmpfs", rw, "tmpfs", MS_NODEV, opts) != 0) { reply_err(id, "mount tmpfs: %s", strerror(errno)); umount2(lower, MNT_DETACH); free(kv); return; }
    snprintf(upper, sizeof upper, "%s/upper", rw);
    snprintf(work, sizeof work, "%s/work", rw);
    mkdir(upper, 0755); mkdir(work, 0755);
    /* the runtime's /etc files and the container's /tmp in the upper layer before the mount (upper_dir) */
    int etc_up = upper_dir(lower, upper, "etc", 0) == 0;
    if (etc_up) write_etc(upper, kv, len, "");
    upper_dir(lower, upper, "tmp", 01777);
    snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work);
    if (mount("overlay", root, "overlay", 0, opts) != 0) {
      reply_err(id, "mount overlay: %s", strerror(errno));
      umount2(rw, MNT_DETACH); umount2(lower, MNT_DETACH); free(kv); return;
    }
    if (!etc_up) write_etc(root, kv, len, "");
    const char *mk[] = { "proc", "sys", "dev", "tmp" };
    for (int i = 0; i < 4; i++) { char p[400]; snprintf(p, sizeof p, "%s/%s", root, mk[i]); mkdir(p, 0755); }
  }
  char cg[128], f[200], val[64];
  cgroup_dir(s, cg, sizeof cg);
  mkdir_p(cg, 0755);
  if (s->mem_limit) { snprintf(f, sizeof f, "%s/memory.max", cg); snprintf(val, sizeof val, "%llu", s->mem_limit); write_file(f, val);
    snprintf(f, sizeof f, "%s/memory.swap.max", cg); write_file(f, "0"); }
  if (s->cpu_quota) { snprintf(f, sizeof f, "%s/cpu.max", cg); snprintf(val, sizeof val, "%llu %llu", s->cpu_quota, s->cpu_period); write_file(f, val); }
  if (s->pids_max) { snprintf(f, sizeof f, "%s/pids.max", cg); snprintf(val, sizeof val, "%llu", s->pids_max); write_file(f, val); }
  /* ahead=N (a VM template's sandbox create): the directories and the cgroup of session N, which a
   * clone's first app container gets, made now in the template so that its create finds them made:
   * a mkdir (a cgroup's with its memory, cpu and pids state) is kernel code a clone would run the
   * first time through TCG's translator. As create makes them: empty, the cgroup without limits. */
  if ((v = kv_get(kv, len, "ahead", 0))) {
    unsigned long n = strtoul(v, NULL, 10);
    if (n > 0 && n <= UINT32_MAX && n != id && !find((uint32_t)n)) {
      const char *sub[] = { "", "/lower", "/rw", "/root" };
      for (int i = 0; i < 4; i++) { snprintf(f, sizeof f, "/run/c/%lu%s", n, sub[i]); mkdir(f, i == 3 ? 0755 : 0700); }
      snprintf(f, sizeof f, "/sys/fs/cgroup/bulkhead/c%lu", n); mkdir(f, 0755);
    }
  }
  s->used = 1;
  s->in_fd = s->out_fd = s->err_fd = -1;
  reply_ok(id, "created");
}

static int mount_dev(const char *root) {
  char p[512];
  snprintf(p, sizeof p, "%s/dev", root);
  if (mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=65536k") != 0) return -1;
  struct { const char *name; int maj, min; } nodes[] = {
    { "null", 1, 3 }, { "zero", 1, 5 }, { "full", 1, 7 }, { "random", 1, 8 }, { "urandom", 1, 9 }, { "tty", 5, 0 },
  };
  for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
    snprintf(p, sizeof p, "%s/dev/%s", root, nodes[i].name);
    mknod(p, S_IFCHR | 0666, makedev(nodes[i].maj, nodes[i].min));
    chmod(p, 0666);
  }
  snprintf(p, sizeof p, "%s/dev/pts", root); mkdir(p, 0755);
  mount("/dev/pts", p, NULL, MS_BIND, NULL);
  snprintf(p, sizeof p, "%s/dev/shm", root); mkdir(p, 01777);
  mount("shm", p, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k");
  snprintf(p, sizeof p, "%s/dev/ptmx", root); symlink("pts/ptmx", p);
  snprintf(p, sizeof p, "%s/dev/fd", root); symlink("/proc/self/fd", p);
  snprintf(p, sizeof p, "%s/dev/stdin", root); symlink("/proc/self/fd/0", p);
  snprintf(p, sizeof p, "%s/dev/stdout", root); symlink("/proc/self/fd/1", p);
  snprintf(p, sizeof p, "%s/dev/stderr", root); symlink("/proc/self/fd/2", p);
  return 0;
}

static void child_fail(int errfd, const char *fmt, ...) {
  char m[1024];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(m, sizeof m, fmt, ap);
  va_end(ap);
  if (n > 0) { if (write(errfd, m, strlen(m))) {} }
  _exit(127);
}

/*
 * One volume from the pod's virtio-fs share (mounted by /init at /run/share), in the container's
 * mount namespace before pivot_root. v = "REL\x1fDEST\x1fro|rw\x1fd|f\x1fPROPAGATION" (the host's
 * share.ts). The destination is walked component by component from the container root without
 * following symlinks (a symlink in the image cannot point the mount at the agent's own tree);
 * missing directories (and a missing file for a file volume) are created on the writable layer.
 */
static void bind_volume(const char *root, const char *v, int errpipe, const char *base) {
  char buf[4600];
  if (strlen(v) >= sizeof buf) child_fail(errpipe, "volume: entry too long");
  strcpy(buf, v);
  char *f[5]; int nf = 0; char *p = buf;
  while (nf < 5) { f[nf++] = p; char *q = strchr(p, 0x1f); if (!q) break; *q = 0; p = q + 1; }
  if (nf != 5) child_fail(errpipe, "volume: malformed entry");
  const char *rel = f[0], *dest = f[1];
  int ro = strcmp(f[2], "ro") == 0, isdir = strcmp(f[3], "d") == 0;
  if (rel[0] == '/' || strstr(rel, "..") || dest[0] != '/' || strstr(dest, "/../") || strcmp(dest, "/") == 0)
    child_fail(errpipe, "volume %s: bad path", dest);
  char src[600];
  snprintf(src, sizeof src, "%s/%s", base, rel);
  /* a copied emptyDir (ed/KEY): one guest directory per source, for every container of the pod */
  if (strncmp(rel, "ed/", 3) == 0 && strcmp(base, CV_DIR) == 0) { mkdir_p(CV_DIR "/ed", 0755); if (mkdir(src, 0777) == 0) chmod(src, 0777); }
  int sfd = open(src, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  if (sfd < 0) child_fail(errpipe, "volume %s: not in the pod's %s (%s): %s", dest, strcmp(base, CV_DIR) == 0 ? "copied volumes" : "share", src, strerror(errno));
  int dfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) child_fail(errpipe, "volume %s: open root: %s", dest, strerror(errno));
  char path[4600]; strcpy(path, dest);
  char *save = NULL, *comp = strtok_r(path + 1, "/", &save);
  while (comp) {
    char *next = strtok_r(NULL, "/", &save);
    int last = next == NULL;
    int fd;
    if (!last || isdir) {
      fd = openat(dfd, comp, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0 && errno == ENOENT) {
        if (mkdirat(dfd, comp, 0755) != 0 && errno != EEXIST) child_fail(errpipe, "volume %s: mkdir %s: %s", dest, comp, strerror(errno));
        fd = openat(dfd, comp, O_PATH | O_NOFOLLOW | O_DIRECTORY | O_CLOEXEC);
      }
    } else {
      fd = openat(dfd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0 && errno == ENOENT) {
        int c = openat(dfd, comp, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (c < 0) child_fail(errpipe, "volume %s: create %s: %s", dest, comp, strerror(errno));
        close(c);
        fd = openat(dfd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
      }
    }
    if (fd < 0) child_fail(errpipe, "volume %s: %s: %s", dest, comp, errno == ELOOP || errno == ENOTDIR ? "the path crosses a symlink or a non-directory in the image" : strerror(errno));
    close(dfd); dfd = fd;
    comp = next;
  }
  struct stat st;
  if (fstat(dfd, &st) != 0 || (isdir ? !S_ISDIR(st.st_mode) : S_ISDIR(st.st_mode)))
    child_fail(errpipe, "volume %s: the destination is a %s, the volume a %s", dest, isdir ? "file" : "directory", isdir ? "directory" : "file");
  char s1[64], s2[64];
  snprintf(s1, sizeof s1, "/proc/self/fd/%d", sfd);
  snprintf(s2, sizeof s2, "/proc/self/fd/%d", dfd);
  if (mount(s1, s2, NULL, MS_BIND | MS_REC, NULL) != 0) child_fail(errpipe, "volume %s: bind: %s", dest, strerror(errno));
  if (ro) {
    char full[5000];
    snprintf(full, sizeof full, "%s%s", root, dest);
    if (mount(NULL, full, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) != 0) child_fail(errpipe, "volume %s: read-only: %s", dest, strerror(errno));
  }
  close(sfd); close(dfd);
}

/* In the forked child: enter (or create) the container's namespaces, become the user, exec. */
static void child_exec(struct sess *s, struct sess *parent, int stdio[3], int errpipe) {
  const char *kv = s->kv; size_t len = s->kvlen;
  const char *v;
  setsid();
  for (int i = 0; i < 3; i++) if (dup2(stdio[i], i) < 0) child_fail(errpipe, "dup2: %s", strerror(errno));
  if (s->tty) ioctl(0, TIOCSCTTY, 0);
  for (int fd = 3; fd < 1024; fd++) if (fd != errpipe) close(fd);
  char cg[128], f[200];
  cgroup_dir(s, cg, sizeof cg);
  snprintf(f, sizeof f, "%s/cgroup.procs", cg);
  if (write_file(f, "0") != 0) child_fail(errpipe, "join cgroup %s: %s", cg, strerror(errno));
  if (s->is_exec) {
    const char *nss[] = { "ipc", "uts", "mnt" };
    for (int i = 0; i < 3; i++) {
      snprintf(f, sizeof f, "/proc/%d/ns/%s", parent->pid, nss[i]);
      int fd = open(f, O_RDONLY | O_CLOEXEC);
      if (fd < 0 || setns(fd, 0) != 0) child_fail(errpipe, "enter %s namespace of the container: %s", nss[i], strerror(errno));
      close(fd);
    }
  } else {
    char root[300], p[400];
    snprintf(root, sizeof root, "/run/c/%u/root", s->id);
    /* IPC and UTS: the container's own, or the pod's ("join_ipc"/"join_uts" = the session whose
     * namespace it shares: the sandbox's, as Kubernetes pods share IPC and the hostname). */
    int fl = CLONE_NEWNS;
    const char *nsn[] = { "ipc", "uts" }; int nsf[] = { CLONE_NEWIPC, CLONE_NEWUTS };
    for (int i = 0; i < 2; i++) {
      char key[16]; snprintf(key, sizeof key, "join_%s", nsn[i]);
      if (!(v = kv_get(kv, len, key, 0))) { fl |= nsf[i]; continue; }
      struct sess *t = find((uint32_t)strtoul(v, NULL, 10));
      if (!t || t->is_exec || !running(t)) child_fail(errpipe, "join the %s namespace of container %s: it is not running", nsn[i], v);
      snprintf(f, sizeof f, "/proc/%d/ns/%s", t->pid, nsn[i]);
      int nfd = open(f, O_RDONLY | O_CLOEXEC);
      if (nfd < 0 || setns(nfd, nsf[i]) != 0) child_fail(errpipe, "join the %s namespace of container %s: %s", nsn[i], v, strerror(errno));
      close(nfd);
    }
    if (unshare(fl) != 0) child_fail(errpipe, "unshare: %s", strerror(errno));
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) child_fail(errpipe, "make / private: %s", strerror(errno));
    if (mount(root, root, NULL, MS_BIND | MS_REC, NULL) != 0) child_fail(errpipe, "bind root: %s", strerror(errno));
    snprintf(p, sizeof p, "%s/proc", root);
    if (mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) child_fail(errpipe, "mount /proc: %s", strerror(errno));
    snprintf(p, sizeof p, "%s/sys", root);
    if (mount("sysfs", p, "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL) != 0) child_fail(errpipe, "mount /sys: %s", strerror(errno));
    if (mount_dev(root) != 0) child_fail(errpipe, "mount /dev: %s", strerror(errno));
    /* Volumes (host paths, kubelet volumes) from the pod's virtio-fs share. */
    for (int i = 0; (v = kv_get(kv, len, "vol", i)); i++) bind_volume(root, v, errpipe, "/run/share");
    /* Copied volumes (protocol 8): files the host sent with Y before the create, and emptyDirs. */
    for (int i = 0; (v = kv_get(kv, len, "cvol", i)); i++) bind_volume(root, v, errpipe, CV_DIR);
    /* OCI maskedPaths: hidden behind an empty read-only tmpfs (dirs) or /dev/null (files). */
    for (int i = 0; (v = kv_get(kv, len, "mask", i)); i++) {
      struct stat st;
      snprintf(p, sizeof p, "%s%s", root, v);
      if (v[0] != '/' || strstr(v, "..") || lstat(p, &st) != 0) continue;
      int rc = S_ISDIR(st.st_mode) ? mount("tmpfs", p, "tmpfs", MS_RDONLY, "size=0") : mount("/dev/null", p, NULL, MS_BIND, NULL);
      if (rc != 0) child_fail(errpipe, "mask %s: %s", v, strerror(errno));
    }
    /* OCI readonlyPaths: bind onto themselves, then read-only. */
    for (int i = 0; (v = kv_get(kv, len, "ropath", i)); i++) {
      snprintf(p, sizeof p, "%s%s", root, v);
      if (v[0] != '/' || strstr(v, "..") || access(p, F_OK) != 0) continue;
      if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) != 0 || mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, NULL) != 0)
        child_fail(errpipe, "read-only %s: %s", v, strerror(errno));
    }
    /* the container's /tmp as it resolves it (an image's /tmp -> /x is root/x, not the guest's) */
    if (!s->readonly) { int tfd = in_root(root, "tmp", O_RDONLY | O_DIRECTORY); if (tfd >= 0) { if (fchmod(tfd, 01777)) {} close(tfd); } }
    if ((v = kv_get(kv, len, "hostname", 0)) && sethostname(v, strlen(v)) != 0) child_fail(errpipe, "sethostname: %s", strerror(errno));
    /* Pod sysctls ("name=value"), written after unshare: IPC ones land in this container's own
     * IPC namespace, net.* in the VM's one network namespace the pod's containers share. */
    for (int i = 0; (v = kv_get(kv, len, "sysctl", i)); i++) {
      const char *eq = strchr(v, '=');
      char name[256], path[300];
      size_t nl = eq ? (size_t)(eq - v) : 0;
      if (!eq || nl == 0 || nl >= sizeof name) child_fail(errpipe, "sysctl %s: malformed", v);
      memcpy(name, v, nl); name[nl] = 0;
      for (char *c = name; *c; c++) {
        if (*c == '.') *c = '/';
        else if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' || *c == '/')) child_fail(errpipe, "sysctl %.*s: bad name", (int)nl, v);
      }
      if (strstr(name, "//") || name[0] == '/' || strstr(name, "..")) child_fail(errpipe, "sysctl %.*s: bad name", (int)nl, v);
      snprintf(path, sizeof path, "/proc/sys/%s", name);
      if (write_file(path, eq + 1) != 0) child_fail(errpipe, "sysctl %.*s=%s in the guest: %s", (int)nl, v, eq + 1, strerror(errno));
    }
    if (chdir(root) != 0) child_fail(errpipe, "chdir root: %s", strerror(errno));
    if (syscall(SYS_pivot_root, ".", ".") != 0) child_fail(errpipe, "pivot_root: %s", strerror(errno));
    if (umount2(".", MNT_DETACH) != 0) child_fail(errpipe, "detach old root: %s", strerror(errno));
    if (chdir("/") != 0) child_fail(errpipe, "chdir /: %s", strerror(errno));
  }
  const char *cwd = (v = kv_get(kv, len, "cwd", 0)) ? v : "/";
  unsigned uid = (v = kv_get(kv, len, "uid", 0)) ? (unsigned)strtoul(v, NULL, 10) : 0;
  unsigned gid = (v = kv_get(kv, len, "gid", 0)) ? (unsigned)strtoul(v, NULL, 10) : 0;
  gid_t groups[64]; int ng = 0;
  while (ng < 64 && (v = kv_get(kv, len, "group", ng))) { groups[ng] = (gid_t)strtoul(v, NULL, 10); ng++; }
  if (!s->readonly) mkdir_p(cwd, 0755);
  if ((v = kv_get(kv, len, "umask", 0))) umask((mode_t)strtoul(v, NULL, 8)); else umask(022);
  /* Security settings: an exec takes the container's (from its create request) unless it brings its
   * own capabilities; the seccomp filter is always the container's. */
  const char *pkv = parent ? parent->kv : kv; size_t plen = parent ? parent->kvlen : len;
  const char *ckv = kv_get(kv, len, "cap_bnd", 0) ? kv : pkv; size_t clen = ckv == kv ? len : plen;
  int has_caps = kv_get(ckv, clen, "cap_bnd", 0) != NULL;
  unsigned long long bnd = 0, eff = 0, prm = 0, inh = 0, amb = 0;
  if (has_caps) {
    bnd = strtoull(kv_get(ckv, clen, "cap_bnd", 0), NULL, 10);
    eff = (v = kv_get(ckv, clen, "cap_eff", 0)) ? strtoull(v, NULL, 10) : 0;
    prm = (v = kv_get(ckv, clen, "cap_prm", 0)) ? strtoull(v, NULL, 10) : 0;
    inh = (v = kv_get(ckv, clen, "cap_inh", 0)) ? strtoull(v, NULL, 10) : 0;
    amb = (v = kv_get(ckv, clen, "cap_amb", 0)) ? strtoull(v, NULL, 10) : 0;
  }
  int nnp = (v = kv_get(kv, len, "nnp", 0)) ? strcmp(v, "1") == 0 : ((v = kv_get(pkv, plen, "nnp", 0)) && strcmp(v, "1") == 0);
  struct sock_fprog filter = { 0, NULL };
  if ((v = kv_get(pkv, plen, "seccomp", 0))) {
    static struct sock_filter insns[4096];
    size_t hl = strlen(v);
    if (hl == 0 || hl % 16 != 0 || hl / 16 > 4096) child_fail(errpipe, "seccomp: bad filter length %zu", hl);
    for (size_t i = 0; i < hl / 2; i++) {
      unsigned int byte;
      if (sscanf(v + 2 * i, "%2x", &byte) != 1) child_fail(errpipe, "seccomp: bad filter encoding");
      ((unsigned char *)insns)[i] = (unsigned char)byte;
    }
    filter.len = (unsigned short)(hl / 16); filter.filter = insns;
  }
  /* Bounding set first (needs CAP_SETPCAP, which we still hold). */
  if (has_caps) {
    int last = (int)read_ull("/proc/sys/kernel/cap_last_cap", NULL);
    if (last <= 0 || last > 63) last = 40;
    for (int cap = 0; cap <= last; cap++) {
      if (bnd & (1ull << cap)) continue;
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) child_fail(errpipe, "drop capability %d: %s", cap, strerror(errno));
    }
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) child_fail(errpipe, "keepcaps: %s", strerror(errno));
  }
  /* Without no_new_privs, installing a filter needs CAP_SYS_ADMIN: do it while we are still root
   * (the default profile allows what follows: setgroups/setgid/setuid/capset/prctl/chdir/execve). */
  if (filter.len && !nnp && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter) != 0) child_fail(errpipe, "seccomp: %s", strerror(errno));
  if (setgroups((size_t)ng, groups) != 0) child_fail(errpipe, "setgroups: %s", strerror(errno));
  if (setgid(gid) != 0) child_fail(errpipe, "setgid %u: %s", gid, strerror(errno));
  if (setuid(uid) != 0) child_fail(errpipe, "setuid %u: %s", uid, strerror(errno));
  if (has_caps) {
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2] = {
      { (uint32_t)eff, (uint32_t)prm, (uint32_t)inh },
      { (uint32_t)(eff >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32) },
    };
    if (syscall(SYS_capset, &hdr, data) != 0) child_fail(errpipe, "capset: %s", strerror(errno));
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) child_fail(errpipe, "clear ambient capabilities: %s", strerror(errno));
    for (int cap = 0; cap < 64; cap++) {
      if ((amb & (1ull << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0) child_fail(errpipe, "raise ambient capability %d: %s", cap, strerror(errno));
    }
  }
  if (nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail(errpipe, "no_new_privs: %s", strerror(errno));
  if (chdir(cwd) != 0) child_fail(errpipe, "chdir %s: %s", cwd, strerror(errno));
  static char *argv[MAX_ARGS + 1], *envp[MAX_ARGS + 1];
  int n = 0;
  while (n < MAX_ARGS && (v = kv_get(kv, len, "arg", n))) { argv[n] = (char *)v; n++; }
  argv[n] = NULL;
  n = 0;
  while (n < MAX_ARGS && (v = kv_get(kv, len, "env", n))) { envp[n] = (char *)v; n++; }
  envp[n] = NULL;
  environ = envp;
  if (!getenv("PATH")) setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
  signal(SIGPIPE, SIG_DFL);
  sigset_t none; sigemptyset(&none); sigprocmask(SIG_SETMASK, &none, NULL);
  if (filter.len && nnp && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter) != 0) child_fail(errpipe, "seccomp: %s", strerror(errno));
  execvp(argv[0], argv);
  int e = errno;
  if (write(errpipe, "exec ", 5)) {}
  child_fail(errpipe, "%s: %s", argv[0], e == ENOENT ? "executable file not found in $PATH" : strerror(e));
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* S / E: fork the process with pipes or a pty for its stdio; failures of exec are reported back. */
static void do_start(struct sess *s) {
  struct sess *parent = NULL;
  if (s->is_exec) {
    parent = find(s->parent);
    if (!running(parent)) { reply_err(s->id, "exec: container %u is not running", s->parent); return; }
  }
  int stdio[3], host[3] = { -1, -1, -1 };
  if (s->tty) {
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0) { reply_err(s->id, "open pty: %s", strerror(errno)); return; }
    const char *v;
    if ((v = kv_get(s->kv, s->kvlen, "winsize", 0))) {
      struct winsize ws = { 0 };
      unsigned r = 0, c = 0;
      if (sscanf(v, "%u %u", &r, &c) == 2) { ws.ws_row = r; ws.ws_col = c; ioctl(m, TIOCSWINSZ, &ws); }
    }
    int sl = open(ptsname(m), O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (sl < 0) { reply_err(s->id, "open pty slave: %s", strerror(errno)); close(m); return; }
    stdio[0] = stdio[1] = stdio[2] = sl;
    host[0] = host[1] = m;
  } else {
    int p[3][2];
    for (int i = 0; i < 3; i++) if (pipe2(p[i], O_CLOEXEC) != 0) { reply_err(s->id, "pipe: %s", strerror(errno)); return; }
    stdio[0] = p[0][0]; host[0] = p[0][1];
    stdio[1] = p[1][1]; host[1] = p[1][0];
    stdio[2] = p[2][1]; host[2] = p[2][0];
  }
  int ep[2];
  if (pipe2(ep, O_CLOEXEC) != 0) { reply_err(s->id, "pipe: %s", strerror(errno)); return; }
  /* A container's process is PID 1 of its own PID namespace; an exec'd process joins that namespace
   * (the agent enters it for the fork only: setns(CLONE_NEWPID) changes where children go). */
  /* A container that shares a PID namespace (PID POD: the sandbox's; TARGET: another container's,
   * "join_pid" = that container's session) is forked into it like an exec'd process. */
  pid_t pid;
  pid_t into = s->is_exec ? parent->pid : 0;
  uint32_t into_id = s->parent;
  const char *jp = s->is_exec ? NULL : kv_get(s->kv, s->kvlen, "join_pid", 0);
  if (jp) {
    struct sess *t = find((uint32_t)strtoul(jp, NULL, 10));
    into_id = (uint32_t)strtoul(jp, NULL, 10);
    if (!t || t->is_exec || !running(t)) {
      close(ep[0]); close(ep[1]);
      for (int i = 0; i < 3; i++) { if (stdio[i] >= 0 && (i == 0 || stdio[i] != stdio[0])) close(stdio[i]); if (host[i] >= 0 && (i == 0 || host[i] != host[0])) close(host[i]); }
      reply_err(s->id, "join the PID namespace of container %u: it is not running", into_id); return;
    }
    into = t->pid;
  }
  if (into) {
    char f[64]; snprintf(f, sizeof f, "/proc/%d/ns/pid", into);
    int nfd = open(f, O_RDONLY | O_CLOEXEC);
    if (nfd < 0 || setns(nfd, CLONE_NEWPID) != 0) {
      int e = errno; if (nfd >= 0) close(nfd);
      close(ep[0]); close(ep[1]);
      for (int i = 0; i < 3; i++) { if (stdio[i] >= 0 && (i == 0 || stdio[i] != stdio[0])) close(stdio[i]); if (host[i] >= 0 && (i == 0 || host[i] != host[0])) close(host[i]); }
      reply_err(s->id, "enter the PID namespace of container %u: %s", into_id, strerror(e)); return;
    }
    close(nfd);
    pid = fork();
    /* the agent only (the child is in the container's namespace now, and cannot go back) */
    if (pid != 0 && setns(own_pidns, CLONE_NEWPID) != 0) logmsg("return to the agent's PID namespace: %s", strerror(errno));
  } else {
    pid = (pid_t)syscall(SYS_clone, (unsigned long)(CLONE_NEWPID | SIGCHLD), NULL, NULL, NULL, 0);
  }
  if (pid < 0) {
    int e = errno;
    close(ep[0]); close(ep[1]);
    for (int i = 0; i < 3; i++) { if (stdio[i] >= 0 && (i == 0 || stdio[i] != stdio[0])) close(stdio[i]); if (host[i] >= 0 && (i == 0 || host[i] != host[0])) close(host[i]); }
    reply_err(s->id, "fork: %s", strerror(e)); return;
  }
  if (pid == 0) { close(ep[0]); child_exec(s, parent, stdio, ep[1]); _exit(127); }
  close(ep[1]);
  if (s->tty) close(stdio[0]); else for (int i = 0; i < 3; i++) close(stdio[i]);
  s->pid = pid;
  s->started = 1;
  s->in_fd = host[0]; s->out_fd = host[1]; s->err_fd = host[2];
  set_nonblock(s->in_fd); set_nonblock(s->out_fd); if (s->err_fd >= 0) set_nonblock(s->err_fd);
  /* The answer waits for the exec in the main loop (start_progress), never here: a child that
   * blocks or is stopped before its execve must not stop the agent. */
  s->starting = 1;
  s->ep_fd = ep[0]; s->ep_got = 0;
  set_nonblock(ep[0]);
  s->start_until = now_ms() + start_wait_ms(s);
}

/* The start's bound: the request's start_wait_ms (the host derives it from its own limit, so the
 * agent's answer comes first), else START_WAIT_MS. */
static long long start_wait_ms(const struct sess *s) {
  const char *v = kv_get(s->kv, s->kvlen, "start_wait_ms", 0);
  unsigned long long ms = v ? strtoull(v, NULL, 10) : START_WAIT_MS;
  if (ms < 100) ms = 100;
  if (ms > 3600000) ms = 3600000;
  return (long long)ms;
}

/* Answers a start: its process exec'd (exec-error pipe closed empty), or the child's report. */
static void start_answer(struct sess *s) {
  if (!s->starting) return;
  s->starting = 0;
  close(s->ep_fd); s->ep_fd = -1;
  if (s->ep_got > 0) {
    /* The child exits 127 after reporting; its exit is collected by reap. */
    s->ep_err[s->ep_got] = 0;
    reply_err(s->id, "%s", s->ep_err);
    return;
  }
  char msg[32]; snprintf(msg, sizeof msg, "%d", s->pid);
  reply_ok(s->id, msg);
}

/* Reads what the child wrote on its exec-error pipe; answers the start at its end. */
static void start_progress(struct sess *s) {
  for (;;) {
    char b[512];
    ssize_t n = read(s->ep_fd, b, sizeof b);
    if (n > 0) {
      size_t room = sizeof s->ep_err - 1 - s->ep_got, k = (size_t)n < room ? (size_t)n : room;
      memcpy(s->ep_err + s->ep_got, b, k); s->ep_got += k;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    start_answer(s); /* EOF (or an error: nothing more will come) */
    return;
  }
}

/* A start not answered within its bound (timed_out), or its container deleted meanwhile: the child is killed. */
static void start_abandon(struct sess *s, int timed_out) {
  if (!s->starting) return;
  char st[64] = "", wchan[64] = "", p[64];
  snprintf(p, sizeof p, "/proc/%d/stat", s->pid);
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) { ssize_t n = read(fd, st, sizeof st - 1); close(fd); st[n > 0 ? n : 0] = 0; }
  char *rp = strrchr(st, ')');
  char state = rp && rp[1] == ' ' ? rp[2] : '?';
  snprintf(p, sizeof p, "/proc/%d/wchan", s->pid);
  fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) { ssize_t n = read(fd, wchan, sizeof wchan - 1); close(fd); wchan[n > 0 ? n : 0] = 0; }
  logmsg("session %u: %s before its process %d exec'd (state %c, wchan %s): killed", s->id, timed_out ? "start timed out" : "deleted", s->pid, state, wchan[0] ? wchan : "-");
  kill(s->pid, SIGKILL);
  s->starting = 0;
  close(s->ep_fd); s->ep_fd = -1;
  if (timed_out) reply_err(s->id, "start: the process did not reach its exec within %u ms (a step before it blocked or was stopped): killed", (unsigned)start_wait_ms(s));
  else reply_err(s->id, "start: the container was deleted before its process reached its exec");
}

/* Whether `sig` sent to `pid` would be dropped: the process is PID 1 of its PID namespace (NSpid's
 * last field is 1) and neither catches nor ignores it, so the kernel discards it (only SIGKILL and
 * SIGSTOP reach a namespace's init from outside). A container's PID 1 that has not yet installed its
 * handler (a slow start under TCG) would otherwise miss the stop signal and wait out the grace period. */
static int init_drops(pid_t pid, int sig) {
  if (sig <= 0 || sig > 64 || sig == SIGKILL || sig == SIGSTOP) return 0;
  char p[64], b[4096]; snprintf(p, sizeof p, "/proc/%d/status", pid);
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, b, sizeof b - 1); close(fd);
  if (n <= 0) return 0;
  b[n] = 0;
  char *ns = strstr(b, "\nNSpid:"), *ign = strstr(b, "\nSigIgn:"), *cgt = strstr(b, "\nSigCgt:");
  if (!ns || !ign || !cgt) return 0;
  char *eol = strchr(ns + 1, '\n'); if (eol) *eol = 0;
  char *last = strrchr(ns, '\t'); if (!last) last = strrchr(ns, ' ');
  int init = last && strtol(last + 1, NULL, 10) == 1;
  if (eol) *eol = '\n';
  if (!init) return 0;
  unsigned long long bit = 1ULL << (sig - 1);
  return !(strtoull(ign + 8, NULL, 16) & bit) && !(strtoull(cgt + 8, NULL, 16) & bit);
}

static void do_exec(uint32_t id, char *kv, size_t len) {
  if (find(id)) { reply_err(id, "session %u exists", id); free(kv); return; }
  const char *v = kv_get(kv, len, "parent", 0);
  struct sess *p = v ? find((uint32_t)strtoul(v, NULL, 10)) : NULL;
  if (!p || p->is_exec) { reply_err(id, "exec: unknown container"); free(kv); return; }
  if (!kv_get(kv, len, "arg", 0)) { reply_err(id, "exec: no process args"); free(kv); return; }
  struct sess *s = NULL;
  for (int i = 0; i < MAX_SESS; i++) if (!sessions[i].used) { s = &sessions[i]; break; }
  if (!s) { reply_err(id, "too many sessions"); free(kv); return; }
  memset(s, 0, sizeof *s);
  s->used = 1; s->id = id; s->is_exec = 1; s->parent = p->id; s->kv = kv; s->kvlen = len;
  s->tty = (v = kv_get(kv, len, "tty", 0)) && strcmp(v, "1") == 0;
  s->in_fd = s->out_fd = s->err_fd = -1;
  do_start(s);
  if (!s->started) { free(s->kv); s->used = 0; }
}

static void close_io(struct sess *s) {
  if (s->in_fd >= 0 && s->in_fd != s->out_fd) close(s->in_fd);
  if (s->out_fd >= 0) close(s->out_fd);
  if (s->err_fd >= 0) close(s->err_fd);
  s->in_fd = s->out_fd = s->err_fd = -1;
  free(s->inq.p); s->inq.p = NULL; s->inq.len = s->inq.cap = 0;
}

/* Forward what a process wrote; returns 0 at EOF (and says so to the host). */
static int pump(struct sess *s, int *fdp, char type) {
  char b[32768];
  ssize_t n = read(*fdp, b, sizeof b);
  if (n > 0) { send_frame(type, s->id, b, (size_t)n); return 1; }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 1;
  /* EOF, or EIO from a pty master whose slave is closed everywhere */
  if (*fdp == s->in_fd) s->in_fd = -1;
  close(*fdp); *fdp = -1;
  send_frame(type, s->id, NULL, 0);
  return 0;
}

static void reap(void) {
  int st; pid_t pid;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
    for (int i = 0; i < MAX_SESS; i++) {
      struct sess *s = &sessions[i];
      if (!s->used || s->pid != pid || s->exited) continue;
      /* a child that ended before its start was answered: the start's answer first (its report, if any) */
      if (s->starting) { start_progress(s); start_answer(s); }
      s->exited = 1;
      s->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      /* Send what is left in the pipes before the exit. */
      for (int k = 0; k < 64 && s->out_fd >= 0; k++) if (!pump(s, &s->out_fd, 'O')) break;
      for (int k = 0; k < 64 && s->err_fd >= 0; k++) if (!pump(s, &s->err_fd, 'R')) break;
      close_io(s);
      char m[32]; snprintf(m, sizeof m, "%d", s->status);
      send_frame('X', s->id, m, strlen(m));
      if (s->is_exec) { free(s->kv); s->used = 0; }
    }
  }
}

static void do_delete(uint32_t id) {
  struct sess *s = find(id);
  if (!s || s->is_exec) { reply_err(id, "delete: unknown container"); return; }
  if (s->starting) start_abandon(s, 0);
  if (s->started && !s->exited) {
    kill(-s->pid, SIGKILL); kill(s->pid, SIGKILL);
    /* Waited for a second at most: a process stuck in the kernel must not stop the agent (reap
     * collects it whenever it goes). */
    int st;
    for (int i = 0; i < 100 && waitpid(s->pid, &st, WNOHANG) == 0; i++) usleep(10000);
    s->exited = 1;
  }
  /* Exec sessions of this container die with it. */
  for (int i = 0; i < MAX_SESS; i++) {
    struct sess *e = &sessions[i];
    if (e->used && e->is_exec && e->parent == id && !e->exited) { if (e->starting) start_abandon(e, 0); kill(e->pid, SIGKILL); }
  }
  close_io(s);
  char p[300];
  snprintf(p, sizeof p, "/run/c/%u/root", id); umount2(p, MNT_DETACH);
  snprintf(p, sizeof p, "/run/c/%u/rw", id); umount2(p, MNT_DETACH);
  snprintf(p, sizeof p, "/run/c/%u/lower", id);
  if (umount2(p, 0) != 0) umount2(p, MNT_DETACH);
  /* its copied volumes (Y init): their tmpfs goes with it */
  snprintf(p, sizeof p, CV_DIR "/%u", id);
  if (umount2(p, MNT_DETACH) == 0) rmdir(p);
  char dev[64] = "";
  find_slot_dev(s->slot, dev, sizeof dev);
  int fd = dev[0] ? open(dev, O_RDONLY | O_CLOEXEC) : -1;
  if (fd >= 0) { ioctl(fd, BLKFLSBUF, 0); close(fd); }
  char cg[128]; cgroup_dir(s, cg, sizeof cg);
  for (int i = 0; i < 50 && rmdir(cg) != 0 && errno == EBUSY; i++) usleep(20000);
  free(s->kv);
  memset(s, 0, sizeof *s);
  reply_ok(id, "deleted");
}

static unsigned long long read_ull(const char *path, const char *key) {
  char b[4096]; int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, b, sizeof b - 1); close(fd);
  if (n <= 0) return 0;
  b[n] = 0;
  if (!key) return strtoull(b, NULL, 10);
  char *p = strstr(b, key);
  return p ? strtoull(p + strlen(key), NULL, 10) : 0;
}

static void do_stats(uint32_t id) {
  char cg[128], f[200], out[512];
  unsigned long long mem = 0, cpu = 0, oom = 0;
  struct sess *s = find(id);
  if (s) {
    cgroup_dir(s, cg, sizeof cg);
    snprintf(f, sizeof f, "%s/memory.current", cg); mem = read_ull(f, NULL);
    snprintf(f, sizeof f, "%s/cpu.stat", cg); cpu = read_ull(f, "usage_usec ");
    snprintf(f, sizeof f, "%s/memory.events", cg); oom = read_ull(f, "oom_kill ");
  }
  unsigned long long total = read_ull("/proc/meminfo", "MemTotal:"), avail = read_ull("/proc/meminfo", "MemAvailable:");
  unsigned long long pids = 0;
  if (s) { snprintf(f, sizeof f, "%s/pids.current", cg); pids = read_ull(f, NULL); }
  snprintf(out, sizeof out, "memory_bytes=%llu cpu_usec=%llu oom_kills=%llu pids=%llu vm_mem_total_kb=%llu vm_mem_available_kb=%llu", mem, cpu, oom, pids, total, avail);
  reply_ok(id, out);
}


static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* An IPv4 interface request on eth0 (or an alias "eth0:N"). */
static int if_ioctl(int sock, unsigned long req, const char *ifname, struct ifreq *ifr) {
  snprintf(ifr->ifr_name, IFNAMSIZ, "%s", ifname);
  return ioctl(sock, req, ifr);
}

static void set_in(struct sockaddr *sa, in_addr_t a) {
  struct sockaddr_in *in = (struct sockaddr_in *)sa;
  memset(in, 0, sizeof *in);
  in->sin_family = AF_INET;
  in->sin_addr.s_addr = a;
}

/* The pod's network identity on eth0 (a restored VM has the template's: no address, down). */
static int identity_net(uint32_t id, const char *kv, size_t len) {
  const char *mac = kv_get(kv, len, "mac", 0), *mtu = kv_get(kv, len, "mtu", 0), *gw = kv_get(kv, len, "gw", 0);
  if (!mac && !kv_get(kv, len, "addr", 0)) return 0;
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) { reply_err(id, "identity: socket: %s", strerror(errno)); return -1; }
  struct ifreq ifr;
  if (mac) {
    unsigned int b[6];
    memset(&ifr, 0, sizeof ifr);
    if (sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6 || strlen(mac) != 17) { close(sock); reply_err(id, "identity: bad mac"); return -1; }
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    for (int i = 0; i < 6; i++) ifr.ifr_hwaddr.sa_data[i] = (char)b[i];
    if (if_ioctl(sock, SIOCSIFHWADDR, "eth0", &ifr) != 0) { reply_err(id, "identity: eth0 mac: %s", strerror(errno)); close(sock); return -1; }
  }
  if (mtu) {
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_mtu = atoi(mtu);
    if (if_ioctl(sock, SIOCSIFMTU, "eth0", &ifr) != 0) { reply_err(id, "identity: eth0 mtu: %s", strerror(errno)); close(sock); return -1; }
  }
  const char *a;
  for (int n = 0; (a = kv_get(kv, len, "addr", n)) != NULL; n++) {
    char ip[32], ifname[IFNAMSIZ];
    unsigned plen = 0;
    if (strlen(a) >= sizeof ip || sscanf(a, "%31[0-9.]/%u", ip, &plen) != 2 || plen > 32) { close(sock); reply_err(id, "identity: bad address"); return -1; }
    struct in_addr in;
    if (inet_pton(AF_INET, ip, &in) != 1) { close(sock); reply_err(id, "identity: bad address"); return -1; }
    /* the first address is eth0's own; more become aliases eth0:1.. (as `ip addr add` would add them) */
    if (n == 0) snprintf(ifname, sizeof ifname, "eth0"); else snprintf(ifname, sizeof ifname, "eth0:%d", n);
    memset(&ifr, 0, sizeof ifr);
    set_in(&ifr.ifr_addr, in.s_addr);
    if (if_ioctl(sock, SIOCSIFADDR, ifname, &ifr) != 0) { reply_err(id, "identity: eth0 address: %s", strerror(errno)); close(sock); return -1; }
    memset(&ifr, 0, sizeof ifr);
    set_in(&ifr.ifr_netmask, plen ? htonl(0xffffffffu << (32 - plen)) : 0);
    if (if_ioctl(sock, SIOCSIFNETMASK, ifname, &ifr) != 0) { reply_err(id, "identity: eth0 netmask: %s", strerror(errno)); close(sock); return -1; }
  }
  memset(&ifr, 0, sizeof ifr);
  if (if_ioctl(sock, SIOCGIFFLAGS, "eth0", &ifr) != 0) { reply_err(id, "identity: eth0 flags: %s", strerror(errno)); close(sock); return -1; }
  ifr.ifr_flags |= IFF_UP;
  if (if_ioctl(sock, SIOCSIFFLAGS, "eth0", &ifr) != 0) { reply_err(id, "identity: eth0 up: %s", strerror(errno)); close(sock); return -1; }
  if (gw) {
    struct in_addr g;
    if (inet_pton(AF_INET, gw, &g) != 1) { close(sock); reply_err(id, "identity: bad gateway"); return -1; }
    struct rtentry rt;
    memset(&rt, 0, sizeof rt);
    set_in(&rt.rt_dst, INADDR_ANY);
    set_in(&rt.rt_genmask, INADDR_ANY);
    set_in(&rt.rt_gateway, g.s_addr);
    rt.rt_flags = RTF_UP | RTF_GATEWAY;
    rt.rt_dev = (char *)"eth0";
    if (ioctl(sock, SIOCADDRT, &rt) != 0 && errno != EEXIST) { reply_err(id, "identity: default route: %s", strerror(errno)); close(sock); return -1; }
  }
  close(sock);
  return 0;
}

/*
 * The template's sandbox container (sb=ID, created and started before the template was saved) gets
 * the pod's hostname in its UTS namespace (its app containers join it) and the pod's files on its
 * root, as its create would have written them.
 */
static int identity_sandbox(uint32_t id, const char *kv, size_t len) {
  struct sess *s = find((uint32_t)strtoul(kv_get(kv, len, "sb", 0), NULL, 10));
  if (!s || s->is_exec || !running(s)) { reply_err(id, "identity: the template's sandbox container is not running"); return -1; }
  const char *h = kv_get(kv, len, "sb_hostname", 0);
  if (h) {
    char f[64];
    snprintf(f, sizeof f, "/proc/%d/ns/uts", s->pid);
    int nfd = open(f, O_RDONLY | O_CLOEXEC);
    if (nfd < 0 || setns(nfd, CLONE_NEWUTS) != 0) { int e = errno; if (nfd >= 0) close(nfd); reply_err(id, "identity: enter the sandbox's UTS namespace: %s", strerror(e)); return -1; }
    close(nfd);
    int rc = sethostname(h, strlen(h)), e = errno;
    if (setns(own_utsns, CLONE_NEWUTS) != 0) logmsg("return to the agent's UTS namespace: %s", strerror(errno));
    if (rc != 0) { reply_err(id, "identity: sandbox sethostname: %s", strerror(e)); return -1; }
  }
  if (!s->readonly) {
    char root[300];
    snprintf(root, sizeof root, "/run/c/%u/root", s->id);
    write_etc(root, kv, len, "sb_");
  }
  return 0;
}

/*
 * A VM restored from a template is a copy of one that booted once: its random pool, clock, MAC and
 * addresses are the template's. The host sends fresh entropy (mixed in and credited, then the CRNG
 * reseeded, so /dev/urandom of two clones differs from the first read), the time, and the pod's
 * network identity and hostname.
 */
static void do_identity(uint32_t id, char *kv, size_t len) {
  const char *e = kv_get(kv, len, "entropy", 0), *t = kv_get(kv, len, "time", 0), *h = kv_get(kv, len, "hostname", 0);
  if (e) {
    size_t n = strlen(e);
    struct { int entropy_count; int buf_size; unsigned char buf[256]; } ent;
    if (n % 2 || n < 64 || n / 2 > sizeof ent.buf) { free(kv); reply_err(id, "identity: bad entropy"); return; }
    for (size_t i = 0; i < n / 2; i++) {
      int hi = hexval(e[2 * i]), lo = hexval(e[2 * i + 1]);
      if (hi < 0 || lo < 0) { free(kv); reply_err(id, "identity: bad entropy"); return; }
      ent.buf[i] = (unsigned char)(hi << 4 | lo);
    }
    ent.buf_size = (int)(n / 2);
    ent.entropy_count = (int)(n / 2 * 8);
    int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ioctl(fd, RNDADDENTROPY, &ent) != 0 || ioctl(fd, RNDRESEEDCRNG) != 0) {
      int err = errno;
      if (fd >= 0) close(fd);
      free(kv); reply_err(id, "identity: entropy: %s", strerror(err)); return;
    }
    close(fd);
    memset(&ent, 0, sizeof ent);
  }
  if (t) {
    long long sec = 0; long nsec = 0;
    if (sscanf(t, "%lld.%ld", &sec, &nsec) < 1 || sec <= 0 || nsec < 0 || nsec >= 1000000000L) { free(kv); reply_err(id, "identity: bad time"); return; }
    struct timespec ts = { (time_t)sec, nsec };
    if (clock_settime(CLOCK_REALTIME, &ts) != 0) { int err = errno; free(kv); reply_err(id, "identity: set clock: %s", strerror(err)); return; }
  }
  if (h && sethostname(h, strlen(h)) != 0) { int err = errno; free(kv); reply_err(id, "identity: sethostname: %s", strerror(err)); return; }
  if (identity_net(id, kv, len) != 0) { free(kv); return; }
  if (kv_get(kv, len, "sb", 0) && identity_sandbox(id, kv, len) != 0) { free(kv); return; }
  free(kv);
  /* the first 32 bytes the clone's pool gives after the reseed: the host records them (two clones must differ) */
  unsigned char r[32];
  char out[sizeof hello + 80];
  int n = snprintf(out, sizeof out, "%s random=", hello);
  if (syscall(SYS_getrandom, r, sizeof r, 0x0001 /* GRND_NONBLOCK */) == (long)sizeof r) {
    for (size_t i = 0; i < sizeof r && n + 3 < (int)sizeof out; i++) n += snprintf(out + n, sizeof out - (size_t)n, "%02x", r[i]);
  }
  reply_ok(id, out);
}


/*
 * A clean relative path of a copied volume's entry: no leading '/', no empty, '.' or '..'
 * component, at most 4095 bytes (the host's walk sends nothing else; anything else is refused).
 */
static int clean_rel(const char *r) {
  size_t n = strlen(r);
  if (n == 0 || n >= 4096 || r[0] == '/' || r[n - 1] == '/') return 0;
  for (const char *c = r; *c; ) {
    const char *e = strchr(c, '/');
    size_t l = e ? (size_t)(e - c) : strlen(c);
    if (l == 0 || (l == 1 && c[0] == '.') || (l == 2 && c[0] == '.' && c[1] == '.')) return 0;
    c += l; if (*c == '/') c++;
  }
  return 1;
}

/* `dir` of a Y request: GID (init) or GID/N, digits only. */
static int clean_cv_dir(const char *d, int want_n) {
  int slash = 0;
  if (!d || !*d || strlen(d) > 24) return 0;
  for (const char *c = d; *c; c++) {
    if (*c == '/') { if (slash++ || c == d || !c[1]) return 0; }
    else if (*c < '0' || *c > '9') return 0;
  }
  return slash == want_n;
}

/* The parent directory of `rel` under `vfd`, opened without following any symlink and never
 * leaving it (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS): the entry's own name goes to `*name`. */
static int cv_parent(int vfd, char *rel, const char **name) {
  char *sl = strrchr(rel, '/');
  if (!sl) { *name = rel; return dup(vfd); }
  *sl = 0; *name = sl + 1;
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  int fd = (int)syscall(SYS_openat2, vfd, rel, &how, sizeof how);
  *sl = '/';
  return fd;
}

/* Y: one step of a copied volume (see the header). The host is the only writer of /run/cv/GID:
 * containers see it through read-only binds (read-write for a copied single file). */
static void do_copy(uint32_t id, char *payload, size_t len) {
  if (len < 4) { reply_err(id, "copy: short request"); free(payload); return; }
  uint32_t hl = ((uint32_t)(unsigned char)payload[0] << 24) | ((uint32_t)(unsigned char)payload[1] << 16) | ((uint32_t)(unsigned char)payload[2] << 8) | (unsigned char)payload[3];
  if (hl > len - 4 || hl > 16384) { reply_err(id, "copy: bad header length"); free(payload); return; }
  char hdr[16385];
  memcpy(hdr, payload + 4, hl); hdr[hl] = 0;
  const char *data = payload + 4 + hl; size_t dlen = len - 4 - hl;
  const char *op = kv_get(hdr, hl, "op", 0), *dir = kv_get(hdr, hl, "dir", 0), *v;
  char p[600];
  if (!op) { reply_err(id, "copy: no op"); free(payload); return; }
  if (strcmp(op, "init") == 0) {
    if (!clean_cv_dir(dir, 0)) { reply_err(id, "copy: bad dir"); free(payload); return; }
    unsigned long long size = (v = kv_get(hdr, hl, "size", 0)) ? strtoull(v, NULL, 10) : 0;
    char opts[64];
    snprintf(opts, sizeof opts, "size=%llu,mode=0755,nr_inodes=%llu", size ? size : 4096, 8192ull);
    snprintf(p, sizeof p, CV_DIR "/%s", dir);
    mkdir_p(p, 0755);
    umount2(p, MNT_DETACH); /* a session id is never reused in a VM: nothing of another container is there */
    if (mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) { reply_err(id, "copy: mount tmpfs for copied volumes: %s", strerror(errno)); free(payload); return; }
    reply_ok(id, "ok"); free(payload); return;
  }
  if (strcmp(op, "ed") == 0) {
    /* a copied emptyDir of a known size (the host's source a tmpfs: kubelet's medium Memory,
     * sized as its sizeLimit): a tmpfs of its own, shared by the pod's containers */
    int okkey = dir && strlen(dir) == 32;
    for (const char *c = dir; okkey && *c; c++) if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'))) okkey = 0;
    unsigned long long size = (v = kv_get(hdr, hl, "size", 0)) ? strtoull(v, NULL, 10) : 0;
    if (!okkey || size < 4096 || size > (1ull << 40)) { reply_err(id, "copy: bad emptyDir key or size"); free(payload); return; }
    snprintf(p, sizeof p, CV_DIR "/ed/%s", dir);
    mkdir_p(CV_DIR "/ed", 0755);
    if (mkdir(p, 0777) != 0 && errno != EEXIST) { reply_err(id, "copy: mkdir emptyDir: %s", strerror(errno)); free(payload); return; }
    struct stat a, b;
    if (lstat(p, &a) != 0 || !S_ISDIR(a.st_mode) || stat(CV_DIR "/ed", &b) != 0) { reply_err(id, "copy: emptyDir %s is not a directory", dir); free(payload); return; }
    if (a.st_dev == b.st_dev) {
      char opts[64];
      snprintf(opts, sizeof opts, "size=%llu,mode=0777", size);
      if (mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV, opts) != 0) { reply_err(id, "copy: mount tmpfs for an emptyDir: %s", strerror(errno)); free(payload); return; }
    } /* else mounted for an earlier container of the pod: it stays as it is */
    reply_ok(id, "ok"); free(payload); return;
  }
  const char *path = kv_get(hdr, hl, "path", 0);
  if (!clean_cv_dir(dir, 1) || !path || !clean_rel(path)) { reply_err(id, "copy: bad dir or path"); free(payload); return; }
  snprintf(p, sizeof p, CV_DIR "/%s", dir);
  char rel[4096]; snprintf(rel, sizeof rel, "%s", path);
  const char *type = (v = kv_get(hdr, hl, "type", 0)) ? v : "";
  mode_t mode = (v = kv_get(hdr, hl, "mode", 0)) ? (mode_t)(strtoul(v, NULL, 8) & 07777) : 0644;
  /* volume N's own directory, made by its first put (a single-file volume is the entry "f" in it) */
  if (strcmp(op, "put") == 0) mkdir(p, 0755);
  int vfd = open(p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (vfd < 0) { reply_err(id, "copy: %s: %s", p, strerror(errno)); free(payload); return; }
  const char *name;
  int pfd = cv_parent(vfd, rel, &name);
  if (pfd < 0) { reply_err(id, "copy: parent of %s: %s", path, strerror(errno)); close(vfd); free(payload); return; }
  /* temporaries live in /run/cv/GID beside the volumes, never inside one: invisible to the container */
  char tmp[64];
  snprintf(tmp, sizeof tmp, ".bh-copy-%u", id);
  int tfd = openat(vfd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
  int rc = 0; const char *what = "";
  if (strcmp(op, "put") == 0 && strcmp(type, "d") == 0) {
    what = "mkdir";
    if (mkdirat(pfd, name, mode) != 0 && errno != EEXIST) rc = -1;
    else { int d = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC); if (d < 0 || fchmod(d, mode) != 0) rc = -1; if (d >= 0) close(d); }
  } else if (strcmp(op, "put") == 0 && strcmp(type, "f") == 0) {
    /* the file is written into a temporary and renamed into place once whole: a reader sees the
     * old or the new content */
    unsigned long long off = (v = kv_get(hdr, hl, "off", 0)) ? strtoull(v, NULL, 10) : 0;
    int end = (v = kv_get(hdr, hl, "end", 0)) && strcmp(v, "1") == 0;
    what = "write";
    int fd = tfd < 0 ? -1 : openat(tfd, tmp, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (off == 0 ? O_TRUNC : 0), 0600);
    if (fd < 0 || pwrite(fd, data, dlen, (off_t)off) != (ssize_t)dlen) rc = -1;
    if (rc == 0 && end) {
      what = "rename";
      if (fchmod(fd, mode) != 0 || renameat(tfd, tmp, pfd, name) != 0) rc = -1;
    }
    if (fd >= 0) close(fd);
    if (rc != 0 && tfd >= 0) unlinkat(tfd, tmp, 0);
  } else if (strcmp(op, "put") == 0 && strcmp(type, "l") == 0) {
    const char *target = kv_get(hdr, hl, "target", 0);
    what = "symlink";
    if (tfd >= 0) unlinkat(tfd, tmp, 0);
    if (tfd < 0 || !target || !*target || symlinkat(target, tfd, tmp) != 0 || renameat(tfd, tmp, pfd, name) != 0) { rc = -1; if (tfd >= 0) unlinkat(tfd, tmp, 0); }
  } else if (strcmp(op, "del") == 0) {
    what = "remove";
    struct stat st;
    if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && unlinkat(pfd, name, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0) rc = -1;
  } else if (strcmp(op, "get") == 0) {
    int fd = openat(pfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    char out[CV_GET_MAX];
    ssize_t n = 0;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) { what = "read"; rc = -1; }
    else {
      off_t from = st.st_size > CV_GET_MAX ? st.st_size - CV_GET_MAX : 0;
      n = pread(fd, out, sizeof out, from);
      if (n < 0) { what = "read"; rc = -1; }
    }
    if (fd >= 0) close(fd);
    if (rc == 0) { send_frame('A', id, out, (size_t)n); if (tfd >= 0) close(tfd); close(pfd); close(vfd); free(payload); return; }
  } else { reply_err(id, "copy: bad op %s", op); if (tfd >= 0) close(tfd); close(pfd); close(vfd); free(payload); return; }
  int e = errno;
  if (tfd >= 0) close(tfd);
  close(pfd); close(vfd);
  if (rc != 0) reply_err(id, "copy: %s %s: %s", what, path, strerror(e)); else reply_ok(id, "ok");
  free(payload);
}

static void handle(char type, uint32_t id, char *payload, size_t len) {
  struct sess *s;
  switch (type) {
  case 'C': do_create(id, payload, len); return;
  case 'E': do_exec(id, payload, len); return;
  case 'S':
    free(payload);
    if (!(s = find(id)) || s->is_exec) { reply_err(id, "start: unknown container"); return; }
    if (s->started) { reply_err(id, "start: already started"); return; }
    do_start(s);
    return;
  case 'I':
    if (!(s = find(id)) || s->in_fd < 0) { free(payload); return; }
    if (len == 0) { s->in_eof = 1; }
    else {
      if (s->inq.len + len > s->inq.cap) { s->inq.cap = (s->inq.len + len) * 2; s->inq.p = realloc(s->inq.p, s->inq.cap); }
      memcpy(s->inq.p + s->inq.len, payload, len); s->inq.len += len;
    }
    free(payload);
    return;
  case 'K': {
    int sig = payload && len ? atoi(payload) : SIGTERM;
    int all = payload && len && strstr(payload, "all") != NULL;
    free(payload);
    if (!(s = find(id))) { reply_err(id, "kill: unknown session"); return; }
    if (!s->started || s->exited) { reply_err(id, "kill: process is not running"); return; }
    if ((all ? kill(-s->pid, sig) : kill(s->pid, sig)) != 0 && errno != ESRCH) { reply_err(id, "kill: %s", strerror(errno)); return; }
    if (sig == SIGKILL) s->pending_sig = 0;
    else if (!all && !s->is_exec && init_drops(s->pid, sig)) s->pending_sig = sig;
    reply_ok(id, "signalled");
    return;
  }
  case 'W': {
    unsigned r = 0, c = 0;
    if (payload && sscanf(payload, "%u %u", &r, &c) == 2 && (s = find(id)) && s->tty && s->out_fd >= 0) {
      struct winsize ws = { 0 }; ws.ws_row = r; ws.ws_col = c; ioctl(s->out_fd, TIOCSWINSZ, &ws);
    }
    free(payload);
    return;
  }
  case 'D': free(payload); do_delete(id); return;
  case 'T': free(payload); do_stats(id); return;
  case 'U': do_identity(id, payload, len); return;
  case 'Y': do_copy(id, payload, len); return;
  case 'P':
    free(payload);
    reply_ok(id, "powering off");
    sync();
    reboot(RB_POWER_OFF);
    return;
  default:
    free(payload);
    reply_err(id, "protocol violation: unknown frame type 0x%02x", (unsigned char)type);
  }
}

static int open_port(void) {
  for (int tries = 0; tries < 500; tries++) {
    DIR *d = opendir("/sys/class/virtio-ports");
    struct dirent *e;
    while (d && (e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      char p[300], name[64] = { 0 };
      snprintf(p, sizeof p, "/sys/class/virtio-ports/%s/name", e->d_name);
      int fd = open(p, O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      ssize_t n = read(fd, name, sizeof name - 1); close(fd);
      if (n > 0 && strncmp(name, "bulkhead.agent", 14) == 0) {
        snprintf(p, sizeof p, "/dev/%s", e->d_name);
        int pf = open(p, O_RDWR | O_CLOEXEC);
        if (pf >= 0) { closedir(d); return pf; }
      }
    }
    if (d) closedir(d);
    /* Firecracker has no virtio-serial: connect to the host over vsock (CID 2, port 1024). */
    int vs = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (vs >= 0) {
      struct sockaddr_vm a = { 0 };
      a.svm_family = AF_VSOCK; a.svm_cid = VMADDR_CID_HOST; a.svm_port = 1024;
      if (connect(vs, (struct sockaddr *)&a, sizeof a) == 0) return vs;
      close(vs);
    }
    usleep(10000);
  }
  return -1;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  sigset_t set; sigemptyset(&set); sigaddset(&set, SIGCHLD);
  sigprocmask(SIG_BLOCK, &set, NULL);
  int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  port = open_port();
  if (port < 0) { logmsg("virtio-serial port bulkhead.agent not found"); sync(); reboot(RB_POWER_OFF); return 1; }
  fcntl(port, F_SETFL, fcntl(port, F_GETFL) | O_NONBLOCK);
  mkdir_p("/run/c", 0700);
  own_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
  own_utsns = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
  struct utsname u; uname(&u);
  snprintf(hello, sizeof hello, "bulkhead-agent %d %s", AGENT_PROTOCOL, u.release);
  send_frame('H', 0, hello, strlen(hello));

  static char rbuf[MAX_PAYLOAD + 9 + 65536];
  size_t rlen = 0;
  for (;;) {
    struct pollfd pf[2 + 4 * MAX_SESS];
    struct { struct sess *s; int which; } map[2 + 4 * MAX_SESS];
    int n = 0;
    pf[n].fd = port; pf[n].events = (short)((rlen < sizeof rbuf && outq.len < OUTQ_READ_MAX ? POLLIN : 0) | (outq.len ? POLLOUT : 0)); n++;
    pf[n].fd = sfd; pf[n].events = POLLIN; n++;
    long long now = now_ms(), until = -1;
    for (int i = 0; i < MAX_SESS; i++) {
      struct sess *s = &sessions[i];
      if (!s->used || !s->started) continue;
      if (s->starting) {
        if (s->start_until <= now) { start_abandon(s, 1); continue; }
        if (until < 0 || s->start_until < until) until = s->start_until;
        pf[n].fd = s->ep_fd; pf[n].events = POLLIN; map[n].s = s; map[n].which = 3; n++;
        continue; /* its output is forwarded once its start is answered */
      }
      int pump_ok = outq.len < OUTQ_PUMP_MAX; /* else the host is behind: output stays in its pipes until it catches up */
      if (s->out_fd >= 0 && pump_ok) { pf[n].fd = s->out_fd; pf[n].events = POLLIN; map[n].s = s; map[n].which = 1; n++; }
      if (s->err_fd >= 0 && pump_ok) { pf[n].fd = s->err_fd; pf[n].events = POLLIN; map[n].s = s; map[n].which = 2; n++; }
      if (s->in_fd >= 0 && (s->inq.len || (s->in_eof && !s->tty))) { pf[n].fd = s->in_fd; pf[n].events = POLLOUT; map[n].s = s; map[n].which = 0; n++; }
    }
    int pending = 0;
    for (int i = 0; i < MAX_SESS; i++) {
      struct sess *s = &sessions[i];
      if (!s->pending_sig) continue;
      if (!s->used || !s->started || s->exited) { s->pending_sig = 0; continue; }
      if (init_drops(s->pid, s->pending_sig)) { pending = 1; continue; }
      kill(s->pid, s->pending_sig); /* it has a handler (or ignores it) now */
      s->pending_sig = 0;
    }
    int wait = pending ? 20 : PORT_RECHECK_MS;
    if (until >= 0 && until - now < wait) wait = (int)(until - now) + 1;
    int pr = poll(pf, (nfds_t)n, wait);
    if (pr < 0 && errno != EINTR) { logmsg("poll: %s", strerror(errno)); continue; }
    /* the port ready only when the timeout looked again, with nothing else waking the agent: its wakeup was lost */
    if (pr == 1 && wait == PORT_RECHECK_MS && (pf[0].revents & pf[0].events) && now_ms() - now >= PORT_RECHECK_MS && missed_wakeups++ < 20)
      logmsg("the port was %s only when looked at again after %d ms (a lost wakeup)", pf[0].revents & POLLIN ? "readable" : "writable", PORT_RECHECK_MS);
    if (pf[0].revents & POLLOUT) flush_host();
    for (int i = 2; i < n; i++) {
      if (!pf[i].revents) continue;
      struct sess *s = map[i].s;
      if (map[i].which == 3) { if (s->starting && s->ep_fd == pf[i].fd) start_progress(s); }
      else if (map[i].which == 1 && s->out_fd == pf[i].fd) pump(s, &s->out_fd, 'O');
      else if (map[i].which == 2 && s->err_fd == pf[i].fd) pump(s, &s->err_fd, 'R');
      else if (map[i].which == 0 && s->in_fd == pf[i].fd) {
        if (s->inq.len) {
          ssize_t w = write(s->in_fd, s->inq.p, s->inq.len);
          if (w > 0) { memmove(s->inq.p, s->inq.p + w, s->inq.len - (size_t)w); s->inq.len -= (size_t)w; }
          else if (w < 0 && errno != EAGAIN && errno != EINTR) { s->inq.len = 0; s->in_eof = 1; }
        }
        if (!s->inq.len && s->in_eof && !s->tty) { close(s->in_fd); s->in_fd = -1; }
      }
    }
    if (pf[1].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {}
      reap();
    }
    if (pf[0].revents & POLLIN) {
      ssize_t r = read(port, rbuf + rlen, sizeof rbuf - rlen);
      if (r < 0 && errno != EAGAIN && errno != EINTR) { logmsg("read port: %s", strerror(errno)); usleep(100000); }
      if (r > 0) rlen += (size_t)r;
      size_t off = 0;
      while (rlen - off >= 9) {
        unsigned char *h = (unsigned char *)rbuf + off;
        uint32_t id = ((uint32_t)h[1] << 24) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 8) | h[4];
        uint32_t len = ((uint32_t)h[5] << 24) | ((uint32_t)h[6] << 16) | ((uint32_t)h[7] << 8) | h[8];
        if (len > MAX_PAYLOAD) {
          reply_err(id, "protocol violation: frame of %u bytes exceeds %u", len, MAX_PAYLOAD);
          rlen = 0; off = 0; break; /* resynchronisation is impossible: drop everything buffered */
        }
        if (rlen - off < 9 + (size_t)len) break;
        char *payload = malloc((size_t)len + 1);
        memcpy(payload, rbuf + off + 9, len);
        payload[len] = 0;
        char type = (char)h[0];
        off += 9 + (size_t)len;
        handle(type, id, payload, len);
      }
      if (off) { memmove(rbuf, rbuf + off, rlen - off); rlen -= off; }
    } else if (pf[0].revents & (POLLHUP | POLLERR)) {
      usleep(50000); /* host side not connected: wait for it */
    }
  }
}
