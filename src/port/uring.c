/*
 * uring.c - the io_uring backend (liburing 2.3 or later).
 *
 * Every op becomes one SQE whose user_data is the struct op; internal SQEs
 * (cancels, wake-ups) carry user_data 0 and their CQEs are dropped.
 *
 * Submission. Any thread may start an op: it takes `lock`, fills an SQE and,
 * only if the poller is blocked in the kernel, submits it at once. Otherwise
 * the SQE stays in the ring and the poller submits it, together with
 * everything else queued, in the same io_uring_enter that waits for the next
 * completions. A worker that handles a batch of completions and starts the
 * next ops therefore costs one syscall per batch, not one per op. liburing's
 * own flush is not thread-safe, so the poller publishes the SQ tail itself
 * under `lock` and then enters without it (sq_publish below).
 *
 * Order. io_uring gives no order between two sends (or two receives) pending
 * on one socket: a short send re-arms behind a later one and bytes interleave.
 * So per fd at most one read-side op (recv, pooled recv) and one write-side op
 * (send, disconnect) is with the kernel; later ones wait in the fd's queue and
 * go in when the one before completes. Accepts are not queued: pre-posting
 * many of them is the point (AcceptEx).
 *
 * Pooled receives use a provided-buffer ring (group 0). A recv that finds it
 * empty fails with -ENOBUFS; it is then parked on the starved list and re-armed
 * when a buffer comes back (cp_port_buf_release), so it is never lost.
 *
 * Cancels use IORING_OP_ASYNC_CANCEL (by fd, all matches) for ops with the
 * kernel and remove queued or starved ops in user space. A cancel that races
 * a partial send's resubmission is caught by the fd's generation number, or
 * the op's cancel flag, which every resubmission checks.
 *
 * Registered files (opt-in: CPORT_URING_FIXED=1; off by default because of
 * the catch below). The ring has a sparse file table with a slot per fd
 * number below the fd limit (RLIMIT_NOFILE when the port is made, at most the
 * port's fd table). cp_port_associate puts the socket in slot fd, and every
 * SQE on it then carries IOSQE_FIXED_FILE with index fd: the kernel skips the
 * fget/fput each SQE otherwise pays. cp_port_disassociate empties the slot
 * after its cancel (by plain fd: it matches ops by file, fixed or not, and the
 * fd is still open). A slot holds a reference to the file, so a socket closed
 * WITHOUT disassociating stays open (no FIN) until its number is associated
 * again or the port is destroyed - the contract is disassociate, then close,
 * but a socket closed behind the port's back then still takes ops (they do not
 * fail with EBADF, as port.test_bad_input wants and IOCP does). An op with the
 * kernel keeps its file either way. Fds at or above the table's size, a
 * kernel without sparse tables (before 5.19), a failed update, or the
 * variable unset: plain fds. So does a kernel that keeps an emptied slot's
 * file until every older fixed-file op has completed (older kernels, 6.1
 * among them: a pending receive of an idle connection would keep every
 * socket closed after it open; fixed_release_run probes it once per
 * process). Measured (docs/performance.md, Round 11), the slots save no
 * CPU: the file's cache miss moves from fget to sock_from_file. The ring's
 * fd is close-on-exec, so an exec'd child holds no slot; a forked child
 * shares the ring and its table.
 *
 * Multishot receive (on unless CPORT_URING_MULTISHOT=0, read at port
 * creation; probed at init, kernel 6.0 or later; off if the probe or the
 * first arm fails with EINVAL). Pooled receives then never go to the kernel one by
 * one: they wait in the fd's queue, and the first one arms a single multishot
 * recv (user_data: the fd, tagged MS_TAG) that stays armed. Each CQE with
 * data completes the oldest waiting receive of the fd with its buffer, or,
 * with none waiting, is kept in a per-fd FIFO linked through per-buffer
 * metadata (struct msbuf, one per pool buffer; the fd's head/tail in a
 * struct msfd, 6 bytes, in chunks allocated only for fds that use it). At
 * MS_QMAX kept buffers the multishot is cancelled: the socket's own buffer
 * then holds the rest (backpressure); the next receive that finds the FIFO
 * empty arms it again. A receive started while buffers wait completes at
 * once through the ready ring. End of stream and errors are kept after the
 * data before them (FDE_MS_END) and delivered once. -ENOBUFS ends the
 * multishot: the oldest receive is parked on the starved list (FDE_MS_PARKED)
 * and re-arms it when a buffer comes back. A plain (caller-buffer) receive
 * first takes what is kept (copied), then has the multishot cancelled and
 * goes to the kernel alone. A cancel ends the waiting receives and the
 * multishot, and keeps what was taken in (and what the multishot's CQEs
 * bring until its last) for the next receive, as the socket would have kept
 * it. Disassociate drops the kept buffers (back to the pool) and those CQEs
 * (FDE_MS_DRAIN). A new multishot on the fd waits for the old one's last
 * CQE, so a tag never means two requests.
 *
 * Huge pages for the receive pool (unless CPORT_URING_HUGE=0). The buffer
 * ring hands its buffers out in turn, so every receive writes a buffer last
 * used a whole pool ago (16 MiB by default: 4,096 pages) and its page walk
 * came first, in the kernel's copy and again at the handler's first read. With
 * MADV_HUGEPAGE the pool is eight pages (docs/performance.md, Round 12). The
 * whole pool is resident under traffic either way; an idle port touches none.
 *
 * One waiter (CP_PORT_ONE_WAITER; CPORT_URING_DEFER=0 turns it off). The
 * ring is made with SINGLE_ISSUER + DEFER_TASKRUN, disabled, and the waiting
 * thread enables it at its first poll: from then on only that thread enters
 * the kernel, and the task work of finished ops (a socket's data, a send's
 * end) runs inside its io_uring_enter, as one batch, rather than at arbitrary
 * kernel exits. Other threads still fill SQEs under `lock`; where they would
 * submit (the poller sleeps in the kernel) they write `wake_fd`, on which the
 * owner keeps a multishot poll armed, and the owner submits at its next
 * enter. An SQ that is full for another thread makes that thread wait for the
 * owner (sq_room: starts and cancels) or fail with CP_EBUSY after 2 s. A buffer
 * released by another thread while receives starve is fed to them by the
 * owner (feed_owed), which alone can count on an SQE. A closed port is drained by its
 * owner in cp_port_wait (uring_drain), so destroy may run on any thread.
 * Registered files are off (their updates are io_uring_register calls, which
 * the kernel then takes from the owner only).
 */
#define _GNU_SOURCE
#include "port/port_internal.h"

#include "common/log.h"

#include <assert.h>
#include <liburing.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#define OPF_CANCEL 0x100 /* in op->how: cancel requested while with the kernel */
#define RELEASED_NONE UINT32_MAX
#define BGID 0

/* Multishot receive (see the header). */
#define MS_TAG 1u  /* user_data low bit (ops are aligned): a multishot recv, fd << 1 */
#define WAKE_UD 2u /* user_data of the one-waiter ring's poll on wake_fd (never an op: aligned) */
#define MS_QMAX 4  /* arrivals kept per fd before its multishot is cancelled */
#define MS_NONE 0xFFFFu /* no buffer (pool indexes are below MAX_BUF_COUNT, 32768) */
/* fdent.ur.busy bits beside FDE_RD_BUSY / WR_BUSY / FIXED (the entry stays 24 bytes). */
enum {
  FDE_MS_ARMED = 8u,   /* a multishot recv of this fd is with the kernel */
  FDE_MS_CANCEL = 16u, /* ... and its cancel was sent */
  FDE_MS_DRAIN = 32u,  /* ... and its CQEs are stale (cancel_fd): drop them */
  FDE_MS_PARKED = 64u, /* the fd's oldest receive waits on the starved list */
  FDE_MS_END = 128u,   /* msfd.end (EOF or error) follows the kept data */
};
_Static_assert(((FDE_RD_BUSY | FDE_WR_BUSY | FDE_FIXED) & 0xf8u) == 0, "busy bits overlap");

struct msbuf { /* per pool buffer: the kept arrivals' FIFO */
  uint32_t next;
  uint32_t len;
};
struct msfd {          /* per fd that armed a multishot (6 bytes: an idle connection pays them) */
  uint16_t head, tail; /* kept buffers, oldest first (MS_NONE: none) */
  int16_t end;         /* with FDE_MS_END: 0 (EOF) or -errno */
};
_Static_assert(sizeof(struct msfd) == 6, "6 bytes per fd that uses multishot");

struct uring;
static struct msfd *msfd_get(struct uring *u, int fd, bool make);
static void ms_pump(cp_port *p, struct sink *s, int fd, struct fdent *e, struct msfd *m);
static void ms_unpark(cp_port *p, struct sink *s, struct op *o, struct fdent *e);
static void ms_settle(cp_port *p, struct sink *s);

struct uring {
  struct io_uring ring;
  cp__lock lock; /* SQ, fd queues, starved list, buffer ring, op states */
  struct io_uring_buf_ring *br;
  size_t br_len;
  uint32_t br_mask;
  uint32_t bufs_out; /* buffers handed to the kernel's CQEs and not yet back */
  /* Buffers released without the lock (cp_port_buf_release): a stack linked
   * through the free buffers themselves (their first 4 bytes: the next index),
   * RELEASED_NONE when empty. The poller hands them to the kernel's ring under
   * the lock it takes anyway (reap, and before it enters the kernel), so a
   * release costs one CAS instead of a lock round trip. */
  _Atomic uint32_t released;
  _Atomic bool starving;  /* starved is not empty (written under lock) */
  uint64_t inflight;      /* ops with the kernel */
  struct opq starved;     /* pooled recvs that found the buffer ring empty */
  _Atomic bool sq_dirty;  /* SQEs wait for the poller's next io_uring_enter */
  unsigned nfixed;        /* registered file slots (fds below it use them); 0: none */
  bool ms;                /* multishot receive in use (not CPORT_URING_MULTISHOT=0; probed) */
  bool ms_seen;           /* a multishot delivered data (an EINVAL after it is no fallback) */
  bool give_pending;      /* buffers went back to the ring: parked receives may go */
  struct msbuf *msb;      /* p->bufs.count entries, or NULL (multishot off at init) */
  struct msfd **msc;      /* FDT_CHUNKS chunk pointers of FDT_CHUNK entries, made on use */
  bool single;            /* one waiter: SINGLE_ISSUER + DEFER_TASKRUN, only `owner` enters */
  bool wake_armed;        /* single: the multishot poll on wake_fd is with the kernel */
  _Atomic bool feed_owed; /* single: a buffer came back while receives starve; the owner feeds */
  int wake_fd;            /* single: an eventfd other threads write to wake the owner; else -1 */
  uintptr_t owner; /* single: the owner's cp__thread_token once it enabled the ring (its first
                      poll; set once, under lock); 0 before */
#ifndef NDEBUG
  bool locked; /* lock is held (for asserts; only its holder reads it true) */
#endif
};

/* struct op keeps the timer's time in a portable struct of the same layout. */
_Static_assert(sizeof(struct cp__timespec) == sizeof(struct __kernel_timespec) &&
                   offsetof(struct cp__timespec, tv_nsec) ==
                       offsetof(struct __kernel_timespec, tv_nsec),
               "cp__timespec must match __kernel_timespec");

static inline struct uring *U(cp_port *p) {
  return p->be_data;
}

static void ulock(struct uring *u) {
  cp__lock_acquire(&u->lock);
#ifndef NDEBUG
  u->locked = true;
#endif
}

static void uunlock(struct uring *u) {
#ifndef NDEBUG
  u->locked = false;
#endif
  cp__lock_release(&u->lock);
}

/* Functions whose comment says "lock held" assert it. */
#define assert_locked(u) assert((u)->locked)

/* ---- probing and setup ---------------------------------------------- */

/* Make the ring with the newest setup the kernel takes: each flag set is
 * tried in turn, EINVAL (a flag this kernel does not know) moving on to the
 * next. *single in: a one-waiter ring is wanted; out: it was made.
 *  - One waiter: SINGLE_ISSUER + DEFER_TASKRUN (6.1), disabled until its
 *    owner enables it (SINGLE_ISSUER binds the ring to the enabling thread).
 *  - COOP_TASKRUN (5.19): a poll wake-up (data arrived on a socket whose
 *    receive armed a poll) queues task work for the submitting thread
 *    without an IPI if that thread is running; it runs the work at its next
 *    kernel entry or exit (our io_uring_enter, any syscall, the next tick).
 *    A sleeping thread is still woken. Without it every such wake-up
 *    interrupts the busy poller. CPORT_URING_COOP=0 leaves it out. */
static int ring_init(struct io_uring *ring, unsigned depth, bool *single) {
  const unsigned base = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
  const char *coop_env = getenv("CPORT_URING_COOP");
  bool coop = !(coop_env && *coop_env == '0');
  const unsigned tries[] = {base | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                IORING_SETUP_R_DISABLED,
                            base | IORING_SETUP_COOP_TASKRUN, base, IORING_SETUP_CQSIZE};
  struct io_uring_params prm;
  int rc = -EINVAL;
  size_t i = single && *single ? 0 : 1;
  for (; rc == -EINVAL && i < sizeof tries / sizeof tries[0]; i++) {
    if (i == 1 && !coop)
      continue;
    memset(&prm, 0, sizeof prm);
    prm.flags = tries[i];
    prm.cq_entries = depth * 8 < 65536 ? depth * 8 : 65536;
    rc = io_uring_queue_init_params(depth, ring, &prm);
  }
  if (single)
    *single = rc == 0 && i == 1; /* the loop stepped past the one that worked */
  if (rc)
    return rc;
  if (!(prm.features & IORING_FEAT_EXT_ARG) || !(prm.features & IORING_FEAT_NODROP)) {
    io_uring_queue_exit(ring);
    return CP_EOPNOTSUPP;
  }
  return 0;
}

/* A provided-buffer ring of `entries` (a power of two) for group BGID,
 * mapped and registered on ring; the caller adds the buffers. 0 or -errno. */
static int buf_ring_make(struct io_uring *ring, uint32_t entries, struct io_uring_buf_ring **br,
                         size_t *len) {
  *len = (sizeof(struct io_uring_buf) * entries + 4095) & ~(size_t)4095;
  void *m = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED)
    return -errno;
  io_uring_buf_ring_init(m);
  struct io_uring_buf_reg reg;
  memset(&reg, 0, sizeof reg);
  reg.ring_addr = (unsigned long)m;
  reg.ring_entries = entries;
  reg.bgid = BGID;
  int rc = io_uring_register_buf_ring(ring, &reg, 0);
  if (rc) {
    munmap(m, *len);
    return rc;
  }
  *br = m;
  return 0;
}

static int uring_probe(void) {
  struct io_uring ring;
  int rc = ring_init(&ring, 8, NULL);
  if (rc)
    return rc;
  struct io_uring_probe *pr = io_uring_get_probe_ring(&ring);
  if (!pr) {
    io_uring_queue_exit(&ring);
    return CP_EOPNOTSUPP;
  }
  static const int need[] = {IORING_OP_ACCEPT,         IORING_OP_CONNECT,      IORING_OP_RECV,
                             IORING_OP_SEND,           IORING_OP_RECVMSG,      IORING_OP_SENDMSG,
                             IORING_OP_SHUTDOWN,       IORING_OP_ASYNC_CANCEL, IORING_OP_TIMEOUT,
                             IORING_OP_TIMEOUT_REMOVE, IORING_OP_NOP};
  for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
    if (!io_uring_opcode_supported(pr, need[i]))
      rc = CP_EOPNOTSUPP;
  io_uring_free_probe(pr);
  io_uring_queue_exit(&ring);
  return rc;
}

/* Does this kernel let go of a file as soon as its registered slot is
 * emptied, while an op on another slot, started before, is still pending?
 * Older kernels (6.1 among them) do not: they recycle emptied slots in
 * order, once every fixed-file op started before has completed (and 6.1
 * waits a second more), so a long-lived receive - an armed multishot, an
 * idle connection's pooled one - would keep every socket disassociated and
 * closed after it open (no FIN, its memory held). Slot 0 holds one end of a
 * socket pair with a receive pending; slot 1 another pair's end, emptied and
 * closed: its peer must read the end of stream within 100 ms. */
static bool fixed_release_run(void) {
  struct io_uring ring;
  if (ring_init(&ring, 8, NULL))
    return false;
  int a[2] = {-1, -1}, b[2] = {-1, -1}, none = -1;
  bool ok = false, pending = false;
  char byte;
  struct io_uring_sqe *sqe;
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a) ||
      socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b) ||
      io_uring_register_files_sparse(&ring, 2) < 0 ||
      io_uring_register_files_update(&ring, 0, (int[]){a[0], b[0]}, 2) != 2 ||
      !(sqe = io_uring_get_sqe(&ring)))
    goto out;
  io_uring_prep_recv(sqe, 0, &byte, 1, 0);
  sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, 1);
  pending = io_uring_submit(&ring) == 1;
  if (!pending || io_uring_register_files_update(&ring, 1, &none, 1) != 1)
    goto out;
  close(b[0]);
  b[0] = -1;
  struct pollfd pf = {.fd = b[1], .events = POLLIN};
  ok = poll(&pf, 1, 100) == 1 && read(b[1], &byte, 1) == 0;
out:
  if (pending) {
    close(a[1]); /* the receive ends (0 bytes) before the ring goes */
    a[1] = -1;
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts = {.tv_sec = 1, .tv_nsec = 0};
    if (io_uring_wait_cqe_timeout(&ring, &cqe, &ts) == 0)
      io_uring_cqe_seen(&ring, cqe);
  }
  io_uring_queue_exit(&ring);
  for (int i = 0; i < 2; i++) {
    if (a[i] >= 0)
      close(a[i]);
    if (b[i] >= 0)
      close(b[i]);
  }
  return ok;
}

/* fixed_release_run, once per process (its answer is the kernel's). */
static bool fixed_release_ok(void) {
  static _Atomic int known; /* 0: not yet asked, 1: yes, 2: no */
  int k = atomic_load(&known);
  if (!k) {
    int was = 0;
    k = fixed_release_run() ? 1 : 2;
    if (atomic_compare_exchange_strong(&known, &was, k) && k == 2) /* said once */
      cp__log(CP_LOG_WARN, "cport: CPORT_URING_FIXED=1 ignored: this kernel keeps a socket open "
                           "after its registered file slot is emptied while older ops are pending "
                           "(older kernels, 6.1 among them); plain file descriptors are used");
  }
  return k == 1;
}

/* The registered file table: how many slots (0: none, plain fds). Sized to
 * the fd limit, capped by the port's fd table (and so the kernel's
 * IORING_MAX_FIXED_FILES); below the limit, liburing would raise it. */
static unsigned fixed_init(struct io_uring *ring) {
  const char *env = getenv("CPORT_URING_FIXED");
  if (!env || *env != '1' || !fixed_release_ok())
    return 0;
  unsigned n = FDT_CHUNK * FDT_CHUNKS;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < n)
    n = (unsigned)rl.rlim_cur;
  if (n == 0 || io_uring_register_files_sparse(ring, n) < 0)
    return 0;
  return n;
}

/* Does this kernel take a multishot recv (6.0)? One is armed on an idle
 * socket pair and cancelled: -ECANCELED if it was taken, -EINVAL if not. */
static bool ms_probe_on(struct io_uring *ring) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
    return false;
  bool ok = false;
  struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
  struct io_uring_sqe *can = sqe ? io_uring_get_sqe(ring) : NULL;
  if (can) {
    io_uring_prep_recv_multishot(sqe, sv[0], NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    io_uring_sqe_set_data64(sqe, 1);
    io_uring_prep_cancel64(can, 1, 0);
    io_uring_sqe_set_data64(can, 2);
    int want = io_uring_submit(ring);
    for (int got = 0; got < want;) {
      struct io_uring_cqe *cqe;
      struct __kernel_timespec ts = {.tv_sec = 2, .tv_nsec = 0};
      int rc = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
      if (rc == -EINTR)
        continue;
      if (rc)
        break;
      if (cqe->user_data == 1 && !(cqe->flags & IORING_CQE_F_MORE)) {
        ok = cqe->res == -ECANCELED;
        got++;
      } else if (cqe->user_data == 2) {
        got++;
      }
      io_uring_cqe_seen(ring, cqe);
    }
  }
  close(sv[0]);
  close(sv[1]);
  return ok;
}

/* ms_probe_on, on a ring of its own with a one-buffer group BGID: the
 * port's ring may be a one-waiter ring, which this thread cannot enter. */
static bool ms_probe(void) {
  struct io_uring ring;
  if (ring_init(&ring, 8, NULL))
    return false;
  struct io_uring_buf_ring *br;
  size_t len;
  char data[64]; /* the one buffer (an idle socket: nothing is written to it) */
  bool made = buf_ring_make(&ring, 1, &br, &len) == 0, ok = false;
  if (made) {
    io_uring_buf_ring_add(br, data, sizeof data, 0, io_uring_buf_ring_mask(1), 0);
    io_uring_buf_ring_advance(br, 1);
    ok = ms_probe_on(&ring);
  }
  io_uring_queue_exit(&ring);
  if (made)
    munmap(br, len);
  return ok;
}

/* Multishot receive wanted, the kernel has it, and its tables made. */
static void ms_init(cp_port *p, struct uring *u) {
  const char *env = getenv("CPORT_URING_MULTISHOT");
  if ((env && *env == '0') || !ms_probe())
    return;
  assert(p->bufs.count < MS_NONE); /* msfd holds pool indexes in 16 bits */
  u->msb = mem_calloc(p->bufs.count, sizeof *u->msb);
  u->msc = mem_calloc(FDT_CHUNKS, sizeof *u->msc);
  if (!u->msb || !u->msc) {
    mem_free(u->msb);
    mem_free(u->msc);
    u->msb = NULL;
    u->msc = NULL;
    return;
  }
  u->ms = true;
}

static int uring_init(cp_port *p) {
  struct uring *u = mem_calloc(1, sizeof *u);
  if (!u)
    return CP_ENOMEM;
  const char *defer = getenv("CPORT_URING_DEFER");
  u->single = p->one_waiter && !(defer && *defer == '0');
  u->wake_fd = -1;
  int rc = ring_init(&u->ring, p->queue_depth, &u->single);
  if (rc) {
    mem_free(u);
    return rc;
  }
  if (u->single) {
    u->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (u->wake_fd < 0) {
      rc = -errno;
      io_uring_queue_exit(&u->ring);
      mem_free(u);
      return rc;
    }
  }
  u->nfixed = u->single ? 0 : fixed_init(&u->ring);
  const char *huge = getenv("CPORT_URING_HUGE");
  if (!(huge && *huge == '0'))
    cp__bufpool_huge(&p->bufs); /* see the top of this file; without it, small pages */
  uint32_t n = p->bufs.count;
  rc = buf_ring_make(&u->ring, n, &u->br, &u->br_len);
  if (rc)
    goto fail_ring;
  u->br_mask = (uint32_t)io_uring_buf_ring_mask(n);
  for (uint32_t i = 0; i < n; i++)
    io_uring_buf_ring_add(u->br, bufpool_addr(&p->bufs, i), p->bufs.size, (unsigned short)i,
                          (int)u->br_mask, (int)i);
  io_uring_buf_ring_advance(u->br, (int)n);
  ms_init(p, u);
  cp__lock_init(&u->lock);
  atomic_init(&u->released, RELEASED_NONE);
  atomic_init(&u->starving, false);
  atomic_init(&u->feed_owed, false);
  p->be_data = u;
  return 0;
fail_ring:
  io_uring_queue_exit(&u->ring);
  if (u->wake_fd >= 0)
    close(u->wake_fd);
  mem_free(u);
  return rc;
}

/* ---- submission (lock held) ----------------------------------------- */

/* Publish SQEs filled since the last publish; returns how many the kernel has
 * not consumed yet. The same steps as liburing's internal flush. */
static unsigned sq_publish(struct io_uring *ring) {
  struct io_uring_sq *sq = &ring->sq;
  unsigned tail = sq->sqe_tail;
  if (sq->sqe_head != tail) {
    sq->sqe_head = tail;
    io_uring_smp_store_release(sq->ktail, tail);
  }
  return tail - io_uring_smp_load_acquire(sq->khead);
}

/* Is the caller the thread that may enter the ring (lock held)? Always,
 * unless it is a one-waiter ring: then only its owner, once it enabled it. */
static bool may_enter(cp_port *p) {
  struct uring *u = U(p);
  return !u->single || (u->owner && u->owner == cp__thread_token());
}

/* Wake a one-waiter ring's owner out of io_uring_enter. */
static void wake_owner(cp_port *p) {
  eventfd_write(U(p)->wake_fd, 1);
  cp__count_syscall(p);
}

/* ... if it is there (or about to be); else it submits at its next poll. */
static void nudge_owner(cp_port *p) {
  if (atomic_load(&p->in_kernel))
    wake_owner(p);
}

static struct io_uring_sqe *get_sqe(cp_port *p) {
  struct uring *u = U(p);
  struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
  if (!sqe && !may_enter(p)) {
    /* SQ full and only the owner may empty it: it will, when it polls. */
    nudge_owner(p);
    return NULL;
  }
  if (!sqe) {
    /* SQ full: hand what is there to the kernel now. */
    sq_publish(&u->ring);
    io_uring_submit(&u->ring);
    cp__count_syscall(p);
    sqe = io_uring_get_sqe(&u->ring);
  }
  return sqe;
}

static void submit_if_poller_sleeps(cp_port *p) {
  if (atomic_load(&p->in_kernel)) {
    /* The caller is not the poller. A one-waiter ring takes SQEs from its
     * owner only: wake it, and its next enter submits them. */
    if (U(p)->single) {
      wake_owner(p);
    } else {
      io_uring_submit(&U(p)->ring);
      cp__count_syscall(p);
    }
  } else if (!atomic_load_explicit(&U(p)->sq_dirty, memory_order_relaxed)) {
    atomic_store_explicit(&U(p)->sq_dirty, true, memory_order_relaxed); /* once per batch */
  }
}

/* Hand the SQ to the kernel now (a cancel: lock held), or, on a one-waiter
 * ring, as soon as its owner can. */
static void submit_now(cp_port *p) {
  if (!may_enter(p)) {
    submit_if_poller_sleeps(p);
    return;
  }
  io_uring_submit(&U(p)->ring);
  cp__count_syscall(p);
}

static bool uring_has_work(cp_port *p) {
  return atomic_load_explicit(&U(p)->sq_dirty, memory_order_relaxed);
}

static void prep(cp_port *p, struct op *o, struct io_uring_sqe *sqe, bool fixed) {
  switch (o->kind) {
  case CP_OP_ACCEPT:
    io_uring_prep_accept(sqe, o->fd, o->u.accept.addr, o->u.accept.addrlen,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
    break;
  case CP_OP_CONNECT:
    io_uring_prep_connect(sqe, o->fd, (const struct sockaddr *)&o->u.connect.addr,
                          o->u.connect.addrlen);
    break;
  case CP_OP_RECV:
    if (o->u.msg.msg_iovlen == 1) {
      struct iovec *v = o->u.msg.msg_iov;
      io_uring_prep_recv(sqe, o->fd, v->iov_base, v->iov_len, 0);
    } else {
      io_uring_prep_recvmsg(sqe, o->fd, &o->u.msg, 0);
    }
    break;
  case CP_OP_RECV_POOLED:
    io_uring_prep_recv(sqe, o->fd, NULL, p->bufs.size, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BGID;
    break;
  case CP_OP_SEND:
    if (o->u.msg.msg_iovlen == 1) {
      struct iovec *v = o->u.msg.msg_iov;
      io_uring_prep_send(sqe, o->fd, v->iov_base, v->iov_len, MSG_NOSIGNAL | MSG_WAITALL);
    } else {
      io_uring_prep_sendmsg(sqe, o->fd, &o->u.msg, MSG_NOSIGNAL | MSG_WAITALL);
    }
    break;
  case CP_OP_DISCONNECT:
    io_uring_prep_shutdown(sqe, o->fd, o->how & 0xff);
    break;
  case CP_OP_TIMEOUT:
    io_uring_prep_timeout(sqe, (struct __kernel_timespec *)(void *)&o->u.timer.ts, 0, 0);
    break;
  }
  if (fixed)
    sqe->flags |= IOSQE_FIXED_FILE; /* sqe->fd: the slot, numbered as the fd */
  io_uring_sqe_set_data(sqe, o);
}

/* The ops of one fd with the kernel are counted in 16 bits (fdent.ur):
 * those a side serialises (busy: at most one read and one write) and the
 * others (accepts, connects), which uring_start refuses past KOPS_MAX so
 * that the two serialised ones always fit. */
#define KOPS_MAX (UINT16_MAX - 2)

/* Hand o to the kernel (lock held). */
static int submit_op(cp_port *p, struct op *o) {
  assert_locked(U(p));
  assert(o->state != OPS_DONE); /* new, queued, starved, or a resubmitted rest */
  struct io_uring_sqe *sqe = get_sqe(p);
  if (!sqe)
    return CP_EBUSY;
  struct fdent *e = o->fd >= 0 ? cp__fdtable_get(&p->fds, o->fd) : NULL;
  prep(p, o, sqe, e && (e->ur.busy & FDE_FIXED));
  o->state = OPS_INFLIGHT;
  U(p)->inflight++;
  if (e) {
    assert(e->ur.kernel_ops < UINT16_MAX); /* uring_start keeps room (KOPS_MAX) */
    e->ur.kernel_ops++;
  }
  return 0;
}

/* On a one-waiter ring, a thread that is not its owner and finds the SQ
 * (nearly) full (lock held): wait for the owner to hand it to the kernel,
 * up to 2 s (an owner that never waits). Only at the start of an op or a
 * cancel, before anything was looked at under the lock, since this lets go
 * of it. */
static void sq_room(cp_port *p) {
  struct uring *u = U(p);
  if (!u->single || io_uring_sq_space_left(&u->ring) >= 4 || may_enter(p))
    return;
  if (!atomic_load(&p->waiter))
    return; /* nobody has waited yet: nothing would empty the SQ (CP_EBUSY if it is full) */
  uint64_t until = cp__now_ns() + 2000000000ull;
  while (io_uring_sq_space_left(&u->ring) < 4 && !atomic_load(&p->closed) && cp__now_ns() < until) {
    nudge_owner(p);
    uunlock(u);
    cp__thread_yield();
    ulock(u);
  }
}

/* Another thread than a one-waiter ring's owner, without the lock: wait
 * until the kernel has taken the SQEs filled before index `upto` (the owner
 * submits them), up to 2 s or the port's close. */
static void sq_consumed_wait(cp_port *p, unsigned upto) {
  struct uring *u = U(p);
  uint64_t until = cp__now_ns() + 2000000000ull;
  while ((int)(upto - io_uring_smp_load_acquire(u->ring.sq.khead)) > 0 &&
         !atomic_load(&p->closed) && cp__now_ns() < until) {
    nudge_owner(p);
    cp__thread_yield();
  }
}

static int uring_start(cp_port *p, struct op *o, struct fdent *e) {
  struct uring *u = U(p);
  int rc = 0;
  ulock(u);
  sq_room(p);
  if (atomic_load(&p->closed)) {
    rc = CP_ESHUTDOWN;
  } else if (u->ms && (o->kind == CP_OP_RECV || o->kind == CP_OP_RECV_POOLED)) {
    /* Waits in the fd's queue for the multishot's data (ms_pump). */
    struct msfd *m = msfd_get(u, o->fd, o->kind == CP_OP_RECV_POOLED);
    if (o->kind == CP_OP_RECV_POOLED && !m) {
      rc = CP_ENOMEM;
    } else {
      struct sink s;
      cp__sink_init(&s, NULL, 0);
      unsigned sqes = u->ring.sq.sqe_tail;
      o->state = OPS_QUEUED;
      opq_push(&e->q, o);
      ms_pump(p, &s, o->fd, e, m);
      ms_settle(p, &s);
      if (u->ring.sq.sqe_tail != sqes)
        submit_if_poller_sleeps(p); /* armed, cancelled or submitted something */
      uunlock(u);
      cp__sink_flush(p, &s); /* completed at once: through the ready ring */
      return 0;
    }
  } else if (o->kind == CP_OP_RECV || o->kind == CP_OP_RECV_POOLED) {
    if (e->ur.busy & FDE_RD_BUSY) {
      o->state = OPS_QUEUED;
      opq_push(&e->q, o);
    } else if (!(rc = submit_op(p, o))) {
      e->ur.busy |= FDE_RD_BUSY;
    }
  } else if (o->kind == CP_OP_SEND || o->kind == CP_OP_DISCONNECT) {
    if (e->ur.busy & FDE_WR_BUSY) {
      o->state = OPS_QUEUED;
      opq_push(&e->q, o);
    } else if (!(rc = submit_op(p, o))) {
      e->ur.busy |= FDE_WR_BUSY;
    }
  } else if (e && e->ur.kernel_ops >= KOPS_MAX) {
    rc = CP_EBUSY; /* accepts or connects (timeouts have no e): 16 bits of them */
  } else {
    rc = submit_op(p, o);
  }
  if (!rc)
    submit_if_poller_sleeps(p);
  uunlock(u);
  return rc;
}

/* ---- completion (lock held) ----------------------------------------- */

static bool cancelled(cp_port *p, struct op *o) {
  if (o->how & OPF_CANCEL)
    return true;
  struct fdent *e = cp__fdtable_get(&p->fds, o->fd);
  return e && atomic_load_explicit(&e->gen, memory_order_acquire) != o->gen;
}

/* The fd's in-flight op of one side finished: start the next queued one. */
static void side_next(cp_port *p, struct sink *s, int fd, bool read_side) {
  assert_locked(U(p));
  struct fdent *e = cp__fdtable_get(&p->fds, fd);
  if (!e)
    return;
  if (read_side && U(p)->ms) {
    e->ur.busy &= (uint8_t) ~(FDE_RD_BUSY | FDE_MS_PARKED);
    ms_pump(p, s, fd, e, msfd_get(U(p), fd, false));
    return;
  }
  uint8_t busy = read_side ? FDE_RD_BUSY : FDE_WR_BUSY;
  struct op *o;
  while ((o = opq_side_pop(&e->q, read_side))) {
    int rc = cancelled(p, o) ? CP_ECANCELED : submit_op(p, o);
    if (!rc)
      return; /* busy stays set */
    cp__sink_put(p, s, o, rc, NULL);
  }
  e->ur.busy &= (uint8_t)~busy;
}

static void give_buffer(cp_port *p, uint32_t bid) {
  assert_locked(U(p));
  struct uring *u = U(p);
  io_uring_buf_ring_add(u->br, bufpool_addr(&p->bufs, bid), p->bufs.size, (unsigned short)bid,
                        (int)u->br_mask, 0);
  io_uring_buf_ring_advance(u->br, 1);
}

/* Hand the buffers released without the lock to the kernel (lock held). */
static void take_released(cp_port *p) {
  assert_locked(U(p));
  struct uring *u = U(p);
  if (atomic_load_explicit(&u->released, memory_order_relaxed) == RELEASED_NONE)
    return;
  uint32_t idx = atomic_exchange(&u->released, RELEASED_NONE);
  int n = 0;
  while (idx != RELEASED_NONE) {
    uint32_t next;
    memcpy(&next, bufpool_addr(&p->bufs, idx), sizeof next);
    io_uring_buf_ring_add(u->br, bufpool_addr(&p->bufs, idx), p->bufs.size, (unsigned short)idx,
                          (int)u->br_mask, n++);
    assert(u->bufs_out > 0);
    u->bufs_out--;
    idx = next;
  }
  io_uring_buf_ring_advance(u->br, n);
}

/* Note whether receives are parked (lock held; after every change of the
 * starved list). Sequentially consistent, paired with the release's CAS and
 * load: a buffer released as a receive parks is seen by one side or the
 * other (see uring_buf_release). */
static void starved_note(struct uring *u) {
  assert_locked(u);
  atomic_store(&u->starving, opq_head(&u->starved) != NULL);
}

/* Re-arm parked pooled receives, as many as there may be free buffers. A
 * re-armed recv that still finds the ring empty is parked again. */
static void feed_starved(cp_port *p, struct sink *s) {
  assert_locked(U(p));
  struct uring *u = U(p);
  do {
    u->give_pending = false;
    take_released(p);
    uint32_t room = p->bufs.count - u->bufs_out;
    struct op *o;
    while (room && (o = opq_pop(&u->starved))) {
      int fd = o->fd;
      struct fdent *e = cp__fdtable_get(&p->fds, fd);
      if (e && (e->ur.busy & FDE_MS_PARKED)) {
        ms_unpark(p, s, o, e); /* its multishot goes again */
        room--;
        continue;
      }
      int rc = cancelled(p, o) ? CP_ECANCELED : submit_op(p, o);
      if (rc) {
        cp__sink_put(p, s, o, rc, NULL);
        side_next(p, s, fd, true);
      } else {
        room--;
      }
    }
  } while (u->give_pending && opq_head(&u->starved));
  u->give_pending = false;
  starved_note(u);
}

/* Feed the parked receives now, or on a one-waiter ring from a thread that
 * may not enter it, let the owner do it at its next poll: feeding may take
 * more SQEs than such a thread can count on (lock held). */
static void feed_later_or_now(cp_port *p, struct sink *s) {
  struct uring *u = U(p);
  if (u->single && !may_enter(p)) {
    atomic_store(&u->feed_owed, true);
    nudge_owner(p);
    return;
  }
  feed_starved(p, s);
}

/* ---- multishot receive (lock held; see the header) ------------------ */

static inline uint64_t ms_tag(int fd) {
  return ((uint64_t)(unsigned)fd << 1) | MS_TAG;
}

/* The fd's kept-arrival FIFO, made if asked (NULL: none, or no memory). */
static struct msfd *msfd_get(struct uring *u, int fd, bool make) {
  assert_locked(u);
  if (fd < 0 || (unsigned)fd >= FDT_CHUNK * FDT_CHUNKS || !u->msc)
    return NULL;
  struct msfd **c = &u->msc[(unsigned)fd >> FDT_CHUNK_BITS];
  if (!*c && make) {
    *c = mem_alloc(FDT_CHUNK * sizeof **c);
    if (*c)
      for (unsigned i = 0; i < FDT_CHUNK; i++)
        (*c)[i] = (struct msfd){MS_NONE, MS_NONE, 0};
  }
  return *c ? &(*c)[(unsigned)fd & (FDT_CHUNK - 1)] : NULL;
}

/* Does the fd keep MS_QMAX buffers or more? (No count is kept, to keep the
 * per-fd entry at 6 bytes: the FIFO is walked, at most MS_QMAX steps.) */
static bool ms_full(struct uring *u, const struct msfd *m) {
  unsigned n = 0;
  for (uint32_t b = m->head; b != MS_NONE && n < MS_QMAX; b = u->msb[b].next)
    n++;
  return n >= MS_QMAX;
}

/* A buffer the kernel filled goes back to it unread. */
static void ms_give(cp_port *p, uint32_t bid) {
  struct uring *u = U(p);
  give_buffer(p, bid);
  assert(u->bufs_out > 0);
  u->bufs_out--;
  u->give_pending = true;
}

/* Buffers went back to the ring: re-arm parked receives. */
static void ms_settle(cp_port *p, struct sink *s) {
  struct uring *u = U(p);
  if (!u->give_pending)
    return;
  if (opq_head(&u->starved))
    feed_later_or_now(p, s);
  u->give_pending = false;
}

/* Drop what the fd kept (cancel): the buffers back to the pool, no end. */
static void ms_forget(cp_port *p, struct msfd *m, struct fdent *e) {
  struct uring *u = U(p);
  while (m->head != MS_NONE) {
    uint32_t bid = m->head;
    m->head = (uint16_t)u->msb[bid].next;
    ms_give(p, bid);
  }
  m->tail = MS_NONE;
  e->ur.busy &= (uint8_t)~FDE_MS_END;
}

static int ms_arm(cp_port *p, struct fdent *e, int fd) {
  struct uring *u = U(p);
  struct io_uring_sqe *sqe = get_sqe(p);
  if (!sqe)
    return CP_EBUSY;
  io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = BGID;
  if (e->ur.busy & FDE_FIXED)
    sqe->flags |= IOSQE_FIXED_FILE;
  io_uring_sqe_set_data64(sqe, ms_tag(fd));
  e->ur.busy |= FDE_MS_ARMED;
  assert(e->ur.kernel_ops < UINT16_MAX);
  e->ur.kernel_ops++;
  u->inflight++;
  return 0;
}

/* Ask the kernel to end the fd's multishot (once). */
static void ms_cancel(cp_port *p, struct fdent *e, int fd) {
  if ((e->ur.busy & (FDE_MS_ARMED | FDE_MS_CANCEL)) != FDE_MS_ARMED)
    return;
  struct io_uring_sqe *sqe = get_sqe(p);
  if (!sqe)
    return; /* tried again at the next arrival */
  io_uring_prep_cancel64(sqe, ms_tag(fd), 0);
  io_uring_sqe_set_data(sqe, NULL);
  e->ur.busy |= FDE_MS_CANCEL;
}

/* Complete o (the fd's oldest read op, unlinked) with the oldest kept
 * buffer: a pooled receive takes it whole; a plain one copies what fits. */
static void ms_deliver(cp_port *p, struct sink *s, struct op *o, struct msfd *m) {
  struct uring *u = U(p);
  uint32_t bid = m->head;
  struct msbuf *b = &u->msb[bid];
  char *data = bufpool_addr(&p->bufs, bid);
  size_t took = b->len;
  if (o->kind == CP_OP_RECV) {
    took = 0;
    for (size_t i = 0; i < o->u.msg.msg_iovlen && took < b->len; i++) {
      struct iovec *v = &o->u.msg.msg_iov[i];
      size_t n = v->iov_len < b->len - took ? v->iov_len : b->len - took;
      memcpy(v->iov_base, data + took, n);
      took += n;
    }
    if (took < b->len) { /* the rest stays first, at the buffer's start */
      memmove(data, data + took, b->len - took);
      b->len -= (uint32_t)took;
      cp__sink_put(p, s, o, (int64_t)took, NULL);
      return;
    }
  }
  m->head = (uint16_t)b->next;
  if (m->head == MS_NONE)
    m->tail = MS_NONE;
  if (o->kind == CP_OP_RECV) {
    ms_give(p, bid);
    data = NULL;
  }
  cp__sink_put(p, s, o, (int64_t)took, data);
}

/* Serve the fd's waiting read ops, in order, from what was kept; arm the
 * multishot for a pooled receive left waiting, or (after it ended) hand a
 * plain receive to the kernel. */
static void ms_pump(cp_port *p, struct sink *s, int fd, struct fdent *e, struct msfd *m) {
  assert_locked(U(p));
  assert(m == msfd_get(U(p), fd, false));
  for (;;) {
    if (e->ur.busy & (FDE_RD_BUSY | FDE_MS_PARKED))
      return; /* the oldest read op is with the kernel or parked */
    struct op *pv, *o = opq_side_head(&e->q, true, &pv);
    if (!o)
      return;
    int64_t res;
    if (cancelled(p, o)) {
      res = CP_ECANCELED;
    } else if (m && m->head != MS_NONE) {
      opq_unlink(&e->q, pv, o);
      ms_deliver(p, s, o, m);
      continue;
    } else if (m && (e->ur.busy & FDE_MS_END)) {
      e->ur.busy &= (uint8_t)~FDE_MS_END;
      res = m->end;
    } else if (o->kind == CP_OP_RECV_POOLED) {
      if (e->ur.busy & FDE_MS_ARMED)
        return; /* waits for the next arrival */
      int rc = ms_arm(p, e, fd);
      if (!rc)
        return;
      res = rc;
    } else {
      /* A plain receive: alone with the kernel, once the multishot ended. */
      if (e->ur.busy & FDE_MS_ARMED) {
        ms_cancel(p, e, fd);
        return;
      }
      opq_unlink(&e->q, pv, o);
      int rc = submit_op(p, o);
      if (!rc) {
        e->ur.busy |= FDE_RD_BUSY;
        return;
      }
      cp__sink_put(p, s, o, rc, NULL);
      continue;
    }
    opq_unlink(&e->q, pv, o);
    cp__sink_put(p, s, o, res, NULL);
  }
}

/* A receive parked for want of a buffer goes first in its fd's queue again
 * and re-arms the multishot. */
static void ms_unpark(cp_port *p, struct sink *s, struct op *o, struct fdent *e) {
  e->ur.busy &= (uint8_t)~FDE_MS_PARKED;
  o->state = OPS_QUEUED;
  opq_push_front(&e->q, o); /* in front: it is the fd's oldest read op */
  ms_pump(p, s, o->fd, e, msfd_get(U(p), o->fd, false));
}

/* A CQE of fd's multishot recv. */
static void ms_cqe(cp_port *p, struct sink *s, int fd, struct io_uring_cqe *cqe) {
  struct uring *u = U(p);
  struct fdent *e = cp__fdtable_get(&p->fds, fd);
  struct msfd *m = msfd_get(u, fd, false);
  assert(e && m && (e->ur.busy & FDE_MS_ARMED));
  int res = cqe->res;
  bool drop = e->ur.busy & FDE_MS_DRAIN;
  if (cqe->flags & IORING_CQE_F_BUFFER) {
    uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    if (res > 0 && !drop) {
      u->ms_seen = true;
      u->bufs_out++;
      u->msb[bid] = (struct msbuf){MS_NONE, (uint32_t)res};
      if (m->tail == MS_NONE)
        m->head = (uint16_t)bid;
      else
        u->msb[m->tail].next = bid;
      m->tail = (uint16_t)bid;
    } else {
      give_buffer(p, bid);
    }
  }
  if (cqe->flags & IORING_CQE_F_MORE) {
    if (ms_full(u, m))
      ms_cancel(p, e, fd); /* enough kept: the socket holds the rest */
  } else {
    /* The multishot ended. */
    e->ur.busy &= (uint8_t) ~(FDE_MS_ARMED | FDE_MS_CANCEL | FDE_MS_DRAIN);
    assert(e->ur.kernel_ops > 0 && u->inflight > 0);
    e->ur.kernel_ops--;
    u->inflight--;
    if (drop || res > 0 || res == -ECANCELED) {
      /* stale, or ended with data (re-armed on demand), or cancelled by us */
    } else if (res == -EINVAL && !u->ms_seen) {
      u->ms = false; /* the kernel refuses it: one-shot receives from now on */
      side_next(p, s, fd, true);
      return;
    } else if (res == -ENOBUFS) {
      struct op *pv, *o = opq_side_head(&e->q, true, &pv);
      if (o && o->kind == CP_OP_RECV_POOLED && m->head == MS_NONE &&
          !(e->ur.busy & (FDE_MS_END | FDE_RD_BUSY)) && !cancelled(p, o)) {
        /* The pool ran dry: park the oldest receive until a buffer is back. */
        opq_unlink(&e->q, pv, o);
        atomic_fetch_add_explicit(&p->n_buf_waits, 1, memory_order_relaxed);
        o->state = OPS_STARVED;
        opq_push(&u->starved, o);
        e->ur.busy |= FDE_MS_PARKED;
        starved_note(u);
        feed_starved(p, s);
        return;
      }
    } else {
      m->end = (int16_t)(res < INT16_MIN ? CP_EIO : res); /* EOF (0) or an error */
      e->ur.busy |= FDE_MS_END;
    }
  }
  ms_pump(p, s, fd, e, m);
}

/* A pooled receive came back: hand out its buffer, or park it if the pool
 * ran dry. */
static void cqe_recv_pooled(cp_port *p, struct sink *s, struct op *o, struct io_uring_cqe *cqe) {
  struct uring *u = U(p);
  int res = cqe->res, fd = o->fd;
  void *buf = NULL;
  if (cqe->flags & IORING_CQE_F_BUFFER) {
    uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    if (res > 0) {
      buf = bufpool_addr(&p->bufs, bid);
      u->bufs_out++;
    } else {
      give_buffer(p, bid);
    }
  }
  if (res == -ENOBUFS && !cancelled(p, o)) {
    /* The pool ran dry: park the op until a buffer comes back. */
    atomic_fetch_add_explicit(&p->n_buf_waits, 1, memory_order_relaxed);
    o->state = OPS_STARVED;
    opq_push(&u->starved, o);
    starved_note(u); /* before feed_starved takes the released buffers */
    feed_starved(p, s);
    return;
  }
  cp__sink_put(p, s, o, res == -ENOBUFS ? CP_ECANCELED : res, buf);
  side_next(p, s, fd, true);
}

/* A send came back: done, or resubmit the rest (a send completes whole). */
static void cqe_send(cp_port *p, struct sink *s, struct op *o, int res) {
  int fd = o->fd;
  /* -EAGAIN is not an end. Seen after the peer half-closed: the FIN wakes
   * the request's internal poll, the retry still finds no room, and the
   * kernel hands the request to its worker, which on a nonblocking socket
   * gives up. Nothing was sent: start it again (a new request waits for
   * room with a fresh poll), unless it was cancelled meanwhile. */
  if (res == -EAGAIN) {
    int rc = cancelled(p, o) ? CP_ECANCELED : submit_op(p, o);
    if (rc == 0)
      return;
    res = rc;
  }
  if (res > 0) {
    int r = cp__op_advance_send(o, (size_t)res);
    if (r == 0 && cancelled(p, o))
      r = CP_ECANCELED;
    if (r == 0 && (r = submit_op(p, o)) == 0)
      return; /* the rest is on its way; the write side stays busy */
    cp__sink_put(p, s, o, r == 1 ? o->done : r, NULL);
  } else {
    cp__sink_put(p, s, o, res == 0 ? CP_EPIPE : res, NULL);
  }
  side_next(p, s, fd, false);
}

static void handle_cqe(cp_port *p, struct sink *s, struct io_uring_cqe *cqe) {
  struct uring *u = U(p);
  assert_locked(u);
  if (cqe->user_data == WAKE_UD) {
    if (!(cqe->flags & IORING_CQE_F_MORE))
      u->wake_armed = false; /* re-armed before the owner next blocks */
    return;
  }
  if (cqe->user_data & MS_TAG) {
    ms_cqe(p, s, (int)(cqe->user_data >> 1), cqe);
    return;
  }
  struct op *o = io_uring_cqe_get_data(cqe);
  if (!o)
    return; /* internal: cancel or wake-up */
  assert(o->state == OPS_INFLIGHT);
  assert(u->inflight > 0);
  u->inflight--;
  int res = cqe->res;
  int fd = o->fd; /* o may be handed out and reused once completed */
  if (fd >= 0) {
    struct fdent *e = cp__fdtable_get(&p->fds, fd);
    assert(e->ur.kernel_ops > 0);
    e->ur.kernel_ops--;
  }
  switch (o->kind) {
  case CP_OP_ACCEPT:
  case CP_OP_CONNECT:
    cp__sink_put(p, s, o, res, NULL);
    return;
  case CP_OP_TIMEOUT:
    cp__sink_put(p, s, o, res == -ETIME ? 0 : res, NULL);
    return;
  case CP_OP_RECV:
    cp__sink_put(p, s, o, res, NULL);
    side_next(p, s, fd, true);
    return;
  case CP_OP_RECV_POOLED:
    cqe_recv_pooled(p, s, o, cqe);
    return;
  case CP_OP_SEND:
    cqe_send(p, s, o, res);
    return;
  case CP_OP_DISCONNECT:
    cp__sink_put(p, s, o, res, NULL);
    side_next(p, s, fd, false);
    return;
  }
  assert(!"a CQE for an op of no kind");
}

/* Take CQEs until out[] is full; the rest stay in the CQ for the next poll. */
static void reap(cp_port *p, struct sink *s) {
  struct uring *u = U(p);
  struct io_uring_cqe *cqes[64];
  while (s->n < s->max) {
    unsigned want = (unsigned)(s->max - s->n);
    if (want > 64)
      want = 64;
    unsigned got = io_uring_peek_batch_cqe(&u->ring, cqes, want);
    if (!got)
      break;
    ulock(u);
    take_released(p);
    for (unsigned i = 0; i < got; i++)
      handle_cqe(p, s, cqes[i]);
    ms_settle(p, s);
    uunlock(u);
    io_uring_cq_advance(&u->ring, got);
  }
}

/* A one-waiter ring, at its owner's first poll: enable it (the kernel binds
 * it to this thread). */
static int ring_enable(cp_port *p) {
  struct uring *u = U(p);
  ulock(u);
  int rc =
      (int)syscall(__NR_io_uring_register, u->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0);
  if (rc == 0) {
    u->owner = cp__thread_token();
  } else {
    rc = -errno;
  }
  uunlock(u);
  if (rc)
    cp__log(CP_LOG_ERROR, "cport: enabling the io_uring ring failed: %s", cp_strerror(rc));
  return rc;
}

/* The owner's multishot poll on wake_fd (lock held). A write made before it
 * is armed still counts: the poll finds the eventfd readable and completes. */
static void wake_arm(cp_port *p) {
  struct uring *u = U(p);
  struct io_uring_sqe *sqe = get_sqe(p);
  if (!sqe)
    return;
  io_uring_prep_poll_multishot(sqe, u->wake_fd, POLLIN);
  io_uring_sqe_set_data64(sqe, WAKE_UD);
  u->wake_armed = true;
}

static int uring_poll(cp_port *p, cp_completion *out, int max, int timeout_ms) {
  struct uring *u = U(p);
  if (u->single && !u->owner) {
    int rc = ring_enable(p);
    if (rc)
      return rc;
  }
  assert(!u->single || u->owner == cp__thread_token()); /* port.c lets one thread wait */
  struct sink s;
  cp__sink_init(&s, out, max);
  if (u->single && atomic_load(&u->feed_owed)) {
    ulock(u);
    atomic_store(&u->feed_owed, false);
    feed_starved(p, &s);
    uunlock(u);
  }
  reap(p, &s);
  if (s.n == 0 && s.nspill == 0) {
    ulock(u);
    if (u->single && !u->wake_armed)
      wake_arm(p);
    take_released(p); /* the kernel gets them before it may need them */
    atomic_store(&p->in_kernel, true);
    atomic_store_explicit(&u->sq_dirty, false, memory_order_relaxed);
    unsigned to_submit = sq_publish(&u->ring);
    uunlock(u);
    struct __kernel_timespec ts;
    struct io_uring_getevents_arg arg;
    memset(&arg, 0, sizeof arg);
    unsigned flags = IORING_ENTER_GETEVENTS;
    void *argp = NULL;
    size_t argsz = _NSIG / 8;
    if (timeout_ms > 0) {
      ts.tv_sec = timeout_ms / 1000;
      ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
      arg.ts = (uint64_t)(uintptr_t)&ts;
      arg.sigmask_sz = _NSIG / 8;
      flags |= IORING_ENTER_EXT_ARG;
      argp = &arg;
      argsz = sizeof arg;
    }
    /* Do not block if a wake-up may have come and gone already: a post
     * queued before in_kernel went up woke nobody, and the NOP of a wake
     * (cp_port_close's) may have been reaped above and dropped as internal -
     * close set `closed` before it woke, so that is checked here (this was
     * the lost wake-up after close: the poller slept until its timeout). */
    bool ready = timeout_ms != 0 &&
                 (atomic_load(&p->closed) || atomic_load(&u->feed_owed) || cp__port_has_ready(p));
    int rc = io_uring_enter2((unsigned)u->ring.ring_fd, to_submit, timeout_ms == 0 || ready ? 0 : 1,
                             flags, argp, argsz);
    cp__count_syscall(p);
    atomic_store(&p->in_kernel, false);
    if (rc == -EEXIST) /* a one-waiter ring entered by another thread: the caller's error */
      return CP_EINVAL;
    (void)rc; /* -ETIME, -EINTR, -EBUSY: whatever is in the CQ is reaped below */
    reap(p, &s);
  } else if (atomic_load_explicit(&u->sq_dirty, memory_order_relaxed)) {
    /* Completions were waiting, so we did not enter the kernel; still hand
     * it the ops started since, or they would wait for the next quiet poll. */
    ulock(u);
    atomic_store_explicit(&u->sq_dirty, false, memory_order_relaxed);
    unsigned to_submit = sq_publish(&u->ring);
    uunlock(u);
    if (to_submit) {
      /* A one-waiter ring runs the task work of finished ops only in an
       * enter with GETEVENTS (none waited for here): without it, the ops
       * that complete at once in these submissions keep the CQ full and
       * the sockets whose data arrived later wait - as seen, a p99 of 80 ms
       * against a p50 of 1 ms. */
      io_uring_enter((unsigned)u->ring.ring_fd, to_submit, 0,
                     u->single ? IORING_ENTER_GETEVENTS : 0, NULL);
      cp__count_syscall(p);
    }
  }
  cp__sink_flush(p, &s);
  return s.n;
}

static void uring_wake(cp_port *p) {
  struct uring *u = U(p);
  if (u->single) {
    wake_owner(p); /* no lock: an eventfd write */
    return;
  }
  ulock(u);
  struct io_uring_sqe *sqe = get_sqe(p);
  if (sqe) {
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data(sqe, NULL);
  }
  io_uring_submit(&u->ring);
  cp__count_syscall(p);
  uunlock(u);
}

/* ---- cancel --------------------------------------------------------- */

/* A cancel may start ops (lock held): the next queued op of a side, or a
 * multishot re-armed for a receive a freed buffer unparked. If SQEs were
 * left unsubmitted, hand them over like any start does. */
static void submit_left(cp_port *p) {
  if (io_uring_sq_ready(&U(p)->ring))
    submit_if_poller_sleeps(p);
}

static int uring_cancel_fd(cp_port *p, int fd, struct fdent *e, bool forget) {
  struct uring *u = U(p);
  struct sink s;
  cp__sink_init(&s, NULL, 0);
  ulock(u);
  sq_room(p);
  /* A starved pooled recv is this fd's oldest read-side op: end it first,
   * then what is queued behind it. */
  struct opq keep = {NULL};
  struct op *o;
  bool was_starved = false;
  while ((o = opq_pop(&u->starved))) {
    if (o->fd != fd) {
      opq_push(&keep, o);
      continue;
    }
    cp__sink_put(p, &s, o, CP_ECANCELED, NULL);
    was_starved = true;
  }
  u->starved = keep;
  starved_note(u);
  if (was_starved) {
    while ((o = opq_side_pop(&e->q, true)))
      cp__sink_put(p, &s, o, CP_ECANCELED, NULL);
    e->ur.busy &= (uint8_t) ~(FDE_RD_BUSY | FDE_MS_PARKED);
  }
  if (u->msb) {
    /* Multishot: the receives waiting for its data (not behind a plain one
     * with the kernel) end now. What it took in stays for the next receive,
     * as it would have stayed in the socket, and so does what its CQEs bring
     * until its last (the cancel by fd below ends it too) - unless the fd is
     * disassociated: then the kept buffers go back to the pool and those
     * CQEs are stale. */
    struct msfd *m = msfd_get(u, fd, false);
    if (forget && m)
      ms_forget(p, m, e);
    if (forget && (e->ur.busy & FDE_MS_ARMED))
      e->ur.busy |= FDE_MS_DRAIN;
    if (!(e->ur.busy & FDE_RD_BUSY))
      while ((o = opq_side_pop(&e->q, true)))
        cp__sink_put(p, &s, o, CP_ECANCELED, NULL);
    ms_settle(p, &s);
  }
  /* Ops queued behind one that is with the kernel stay queued: when it
   * completes, side_next finds them cancelled (the fd's generation moved
   * on) and ends them after it, so one side's ops still complete in order. */
  int rc = 0;
  /* The multishot by its tag as well: that needs no fd, so it is ended even
   * if the caller closes fd before the cancel by fd runs. */
  if (u->msb && (e->ur.busy & FDE_MS_ARMED))
    ms_cancel(p, e, fd);
  struct io_uring_sqe *sqe = e->ur.kernel_ops ? get_sqe(p) : NULL;
  bool await = false; /* until the owner has handed the cancel to the kernel */
  unsigned sent = 0;
  if (!e->ur.kernel_ops) {
    /* nothing with the kernel: no cancel to send */
  } else if (sqe) {
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data(sqe, NULL);
    /* The kernel looks fd up when it runs the cancel. A disassociated fd may
     * be closed as soon as this returns, so on a one-waiter ring another
     * thread waits for the owner to submit it. */
    await = forget && !may_enter(p);
    sent = u->ring.sq.sqe_tail;
    submit_now(p);
  } else {
    rc = CP_EBUSY;
  }
  /* Disassociated: no op starts on fd any more (its generation moved on), so
   * its registered slot goes; ops with the kernel keep their file. */
  bool unfix = forget && (e->ur.busy & FDE_FIXED);
  if (unfix)
    e->ur.busy &= (uint8_t)~FDE_FIXED;
  submit_left(p);
  uunlock(u);
  if (await)
    sq_consumed_wait(p, sent);
  if (unfix) {
    int none = -1;
    io_uring_register_files_update(&u->ring, (unsigned)fd, &none, 1);
    cp__count_syscall(p);
  }
  cp__sink_flush(p, &s);
  return rc;
}

static int uring_cancel_op(cp_port *p, struct op *o) {
  struct uring *u = U(p);
  struct sink s;
  cp__sink_init(&s, NULL, 0);
  int rc = 0;
  ulock(u);
  sq_room(p);
  struct fdent *e = o->fd >= 0 ? cp__fdtable_get(&p->fds, o->fd) : NULL;
  if (o->state == OPS_QUEUED && e && opq_remove(&e->q, o)) {
    cp__sink_put(p, &s, o, CP_ECANCELED, NULL);
  } else if (o->state == OPS_STARVED && opq_remove(&u->starved, o)) {
    starved_note(u);
    int fd = o->fd;
    cp__sink_put(p, &s, o, CP_ECANCELED, NULL);
    side_next(p, &s, fd, true);
  } else if (o->state == OPS_INFLIGHT) {
    o->how |= OPF_CANCEL;
    struct io_uring_sqe *sqe = get_sqe(p);
    if (!sqe) {
      rc = CP_EBUSY;
    } else {
      if (o->kind == CP_OP_TIMEOUT)
        io_uring_prep_timeout_remove(sqe, (uint64_t)(uintptr_t)o, 0);
      else
        io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)o, 0);
      io_uring_sqe_set_data(sqe, NULL);
      submit_now(p);
    }
  } else {
    rc = CP_ENOENT;
  }
  submit_left(p);
  uunlock(u);
  cp__sink_flush(p, &s);
  return rc;
}

/* Put fd in its registered slot. Always updated, even if FDE_FIXED is still
 * set: a caller that closed the fd without disassociating left its old file
 * in the slot, and this number is now another socket. No op of fd starts
 * before this returns (begin() needs the associated bit), so the syscall
 * runs without the lock. If it fails, fd stays on plain SQEs. */
static int uring_associate(cp_port *p, int fd, struct fdent *e) {
  struct uring *u = U(p);
  if (fd < 0 || (unsigned)fd >= u->nfixed)
    return 0;
  bool ok = io_uring_register_files_update(&u->ring, (unsigned)fd, &fd, 1) == 1;
  cp__count_syscall(p);
  ulock(u);
  if (ok)
    e->ur.busy |= FDE_FIXED;
  else
    e->ur.busy &= (uint8_t)~FDE_FIXED;
  uunlock(u);
  return 0;
}

/* No lock: push the buffer on the released stack; the poller hands it to the
 * kernel. Only if receives are parked for want of a buffer, feed them now
 * (under the lock). Push and check pair with starved_note and take_released
 * in cqe_recv_pooled (all sequentially consistent): either this sees the
 * receive parked, or the parking poller sees this buffer. */
static void uring_buf_release(cp_port *p, uint32_t idx) {
  struct uring *u = U(p);
  void *b = bufpool_addr(&p->bufs, idx);
  uint32_t head = atomic_load_explicit(&u->released, memory_order_relaxed);
  do
    memcpy(b, &head, sizeof head);
  while (!atomic_compare_exchange_weak(&u->released, &head, idx));
  if (!atomic_load(&u->starving))
    return;
  struct sink s;
  cp__sink_init(&s, NULL, 0);
  ulock(u);
  feed_later_or_now(p, &s);
  submit_if_poller_sleeps(p);
  uunlock(u);
  cp__sink_flush(p, &s);
}

/* ---- teardown ------------------------------------------------------- */

/* Cancel everything and wait until the kernel has let go of every op, so no
 * caller buffer is written after this returns. Only a thread that may enter
 * the ring; the lock is taken around each step, not while it blocks. */
static void drain_all(cp_port *p) {
  struct uring *u = U(p);
  bool ask = true;
  ulock(u);
  while (u->inflight) {
    if (ask) {
      struct io_uring_sqe *sqe = get_sqe(p);
      if (sqe) {
        io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
        io_uring_sqe_set_data(sqe, NULL);
      }
      io_uring_submit(&u->ring);
      ask = false;
    }
    uunlock(u);
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts = {.tv_sec = 1, .tv_nsec = 0};
    int rc = io_uring_wait_cqe_timeout(&u->ring, &cqe, &ts);
    ulock(u);
    if (rc == -ETIME) {
      ask = true; /* something ignored the cancel (it was still being submitted): ask again */
      continue;
    }
    if (rc == -EINTR)
      continue;
    if (rc < 0)
      break;
    if (cqe->user_data == WAKE_UD) {
      u->wake_armed = (cqe->flags & IORING_CQE_F_MORE) != 0;
    } else if (cqe->user_data & MS_TAG) {
      if (!(cqe->flags & IORING_CQE_F_MORE)) {
        struct fdent *e = cp__fdtable_get(&p->fds, (int)(cqe->user_data >> 1));
        if (e && e->ur.kernel_ops)
          e->ur.kernel_ops--;
        u->inflight--; /* a multishot's last */
      }
    } else if (cqe->user_data) {
      struct op *o = io_uring_cqe_get_data(cqe);
      struct fdent *e = o->fd >= 0 ? cp__fdtable_get(&p->fds, o->fd) : NULL;
      if (e && e->ur.kernel_ops)
        e->ur.kernel_ops--;
      u->inflight--;
      cp__op_free_rest(o);
      o->state = OPS_DONE;
    }
    io_uring_cqe_seen(&u->ring, cqe);
  }
  uunlock(u);
}

/* CP_PORT_ONE_WAITER: the closed port's owner, in cp_port_wait. */
static void uring_drain(cp_port *p) {
  struct uring *u = U(p);
  /* Not a one-waiter ring: destroy drains, on any thread. Not enabled:
   * nothing reached the kernel. What drain_all could not reap (an error of
   * the wait): destroy elsewhere keeps the pool, and logs it. */
  if (u->single && u->owner)
    drain_all(p);
}

static void uring_destroy(cp_port *p) {
  struct uring *u = U(p);
  /* A one-waiter ring takes cancels from its owner only. Its owner drained
   * it at close (cp_port_wait); if it never saw the close, what is still
   * with the kernel may write the buffer pool after we return: keep it. */
  bool unreachable = u->single && u->owner != cp__thread_token();
  if (!unreachable) {
    drain_all(p);
  } else if (u->owner && u->inflight) { /* not enabled: nothing reached the kernel */
    cp__log(CP_LOG_ERROR,
            "cport: a CP_PORT_ONE_WAITER port destroyed off its waiting thread with %llu ops "
            "in flight and not drained (close it while that thread waits): its buffers are "
            "leaked, not freed under the kernel",
            (unsigned long long)u->inflight);
    p->keep_bufs = true;
  }
  for (struct op *o; (o = opq_pop(&u->starved));)
    o->state = OPS_DONE;
  /* Let go of the sockets still in slots now (the ring's own teardown would,
   * later, on a kernel worker). Only with nothing in flight: unregistering
   * waits for the ops that use the table. */
  if (u->nfixed && !u->inflight)
    io_uring_unregister_files(&u->ring);
  if (u->msc)
    for (unsigned i = 0; i < FDT_CHUNKS; i++)
      mem_free(u->msc[i]);
  mem_free(u->msc);
  mem_free(u->msb);
  if (!unreachable)
    io_uring_unregister_buf_ring(&u->ring, BGID);
  if (!p->keep_bufs)
    munmap(u->br, u->br_len);
  io_uring_queue_exit(&u->ring);
  if (u->wake_fd >= 0)
    close(u->wake_fd);
  mem_free(u);
  p->be_data = NULL;
}

const struct backend cp__backend_uring = {
    .name = "uring",
    .probe = uring_probe,
    .init = uring_init,
    .destroy = uring_destroy,
    .associate = uring_associate,
    .cancel_fd = uring_cancel_fd,
    .cancel_op = uring_cancel_op,
    .start = uring_start,
    .poll = uring_poll,
    .wake = uring_wake,
    .drain = uring_drain,
    .buf_release = uring_buf_release,
    .has_work = uring_has_work,
};
