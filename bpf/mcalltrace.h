/* mcalltrace.h: the contract between the BPF programs and user space.
 *
 * Map value layouts and sizes live here and only here; tracer/probes/layout.py mirrors them with
 * ctypes and a unit test checks the two agree. Everything configurable arrives as -D flags from
 * the probe plan (offsets, limits, the target's tgid), never by editing text.
 */
#ifndef MCALLTRACE_H
#define MCALLTRACE_H

/* Number of P slots: the runtime's own maximum (1024) where the per-CPU maps' memory allows it (see
 * plan.p_slots), a power of two; one more slot, MCT_NO_P, collects events on threads that hold no
 * P (and P ids beyond the limit). */
#ifndef MCT_MAX_P
#define MCT_MAX_P 64
#endif
#define MCT_NO_P MCT_MAX_P
#define MCT_P_SLOTS (MCT_MAX_P + 1)

/* Per-M (OS thread) state is indexed by m.id, which the runtime hands out sequentially. */
#ifndef MCT_MAX_M
#define MCT_MAX_M 4096
#endif

/* mcall reasons: the functions mcall is asked to run, by runtime PC, filled by user space. */
#define MCT_REASONS 16
#define MCT_REASON_OTHER (MCT_REASONS - 1)
#define MCT_REASON_PARK 0 /* slot 0 is always runtime.park_m */
#define MCT_REASON_GOEXIT 1 /* slot 1 is always runtime.goexit0 */

/* Goroutine origins: exits counted by the `go` statement that created the goroutine (g.gopc) and
 * the function it ran (g.startpc). Bounded: exits of origins beyond the table count in
 * global_counters.origins_dropped. */
#define MCT_ORIGINS 4096
struct mct_origin_key {
    __u64 gopc;
    __u64 startpc;
};

/* Where goroutines leave their thread, for every mcall reason but goexit0 (whose goroutines are
 * counted by origin): the mcall's caller and the frames above it, by a bounded frame-pointer walk
 * from mcall's entry, with the park's wait reason and the goroutine's start function. User space
 * names the first frame in the program's own code. Bounded like the origins (sites_dropped). */
#define MCT_SITES 4096
#define MCT_SITE_DEPTH 12 /* deep enough for a caller of net.(*UnixConn).Read: gopark, netpollblock, ... */
struct mct_site_key {
    __u32 reason;      /* mcall reason slot */
    __u32 wait_reason; /* g.waitreason for park_m, else 0 */
    __u64 startpc;     /* the goroutine's start function */
    __u64 pcs[MCT_SITE_DEPTH]; /* return addresses, innermost first; 0 past the walk's end */
};

#define MCT_WAIT_REASONS 64
#define MCT_HIST_BUCKETS 32 /* log2 of nanoseconds */

/* Per P, summed over CPUs by user space. Every field is a u64 counter. Each probe increments
 * exactly one of them once per hit (mcalls, switches, findrunnable, steal_attempts, steal
 * successes + failures, migrations), so user space derives the probes' hit counts from them. */
struct mct_p_counters {
    __u64 mcalls;
    __u64 mcall_reasons[MCT_REASONS];
    __u64 switches;              /* runtime.gogo */
    __u64 findrunnable;          /* runtime.findRunnable entries */
    __u64 findrunnable_ns;       /* total time from findRunnable entry to the thread's next switch */
    __u64 findrunnable_timed;    /* how many of those intervals were measured */
    __u64 findrunnable_hist[MCT_HIST_BUCKETS];
    __u64 steal_attempts;        /* runqsteal calls with this P as the thief */
    __u64 steal_successes;
    __u64 steal_failures;
    __u64 stolen_goroutines;
    __u64 victim_attempts;       /* runqsteal calls with this P as the victim */
    __u64 migrations;            /* sched_migrate_task of a thread whose last P was this one */
};

/* Process-wide, summed over CPUs by user space. */
struct mct_global_counters {
    __u64 wait_reasons[MCT_WAIT_REASONS]; /* by g.waitreason, for mcall(park_m) */
    __u64 read_errors;                    /* bpf_probe_read_user failures */
    __u64 unknown_reasons;                /* mcall fn PCs not in the reason table */
    __u64 events_dropped;                 /* detail events lost to a full ring buffer */
    __u64 origins_dropped;                /* goroutine exits whose origin found no room */
    __u64 sites_dropped;                  /* mcalls whose site found no room */
};

/* Probe groups: the probes the overhead budget attaches and detaches together. findRunnable's
 * timing runs from its entry to the next gogo, so the two share a group; so do runqsteal's entry
 * and its RETs. User space bumps a group's generation before each attach, and a handler only
 * pairs an exit with an entry of the same generation, so no measurement spans a detached gap. */
#define MCT_GROUP_MCALL 0  /* runtime.mcall */
#define MCT_GROUP_SWITCH 1 /* runtime.gogo, runtime.findRunnable */
#define MCT_GROUP_STEAL 2  /* runtime.runqsteal and its RETs */
#define MCT_GROUPS 3

/* Hits per probe group, summed over CPUs by user space: what the overhead budget reads every
 * 20 ms, in one lookup, to see a load grow before the interval ends. */
struct mct_group_hits {
    __u64 hits[MCT_GROUPS];
};

/* uprobe_multi cookies: which probe site of its group's link a hit is at. */
#define MCT_SITE_MCALL 1
#define MCT_SITE_GOGO 2
#define MCT_SITE_FINDRUNNABLE 3
#define MCT_SITE_RUNQSTEAL 4
#define MCT_SITE_RUNQSTEAL_RET 5

/* Per M, written only by the thread that runs that M. */
struct mct_m_state {
    __u64 findrunnable_start_ns;   /* 0 when not inside findRunnable */
    __u32 findrunnable_p;
    __u32 findrunnable_generation; /* MCT_GROUP_SWITCH's generation at findRunnable entry */
    __u32 last_p;                  /* for attributing thread migrations */
    __u32 steal_tail;              /* thief's runqtail at runqsteal entry */
    __u32 steal_victim;            /* victim P of the runqsteal in progress */
    __u32 steal_generation;        /* MCT_GROUP_STEAL's generation at runqsteal entry; 0 once
                                    * its result is counted (generations start at 1) */
    __u32 registered;              /* its tid is in the tid -> m.id map */
    __u32 reserved;
};

/* Event-level detail, sent through a ring buffer only while a capture window is open. */
#define MCT_EVENT_MCALL 1
#define MCT_EVENT_STEAL 2
struct mct_event {
    __u64 time_ns;  /* bpf_ktime_get_ns */
    __u64 goid;     /* mcall: the goroutine giving up its thread */
    __u64 pc;       /* mcall: the function mcall runs */
    __u32 kind;
    __u32 p;        /* mcall: its P; steal: the thief */
    __u32 other;    /* mcall: reason slot; steal: the victim */
    __u32 result;   /* steal: goroutines stolen (0: failed) */
};

/* On-CPU stack samples (bpf/profile.bpf.c), keyed by thread and user stack: kept only while a
 * capture window is open (mct_cpu_config.collect_stacks). */
struct mct_stack_key {
    __u32 tid;
    __s32 user_stack_id;
};

/* Where an on-CPU sample of the target was, by its user stack. The sampler walks the stack from
 * the leaf towards the root; the first frame in a function with a category gives an inner
 * category, and a frame in runtime.mcall means the sample is under mcall (the scheduler on g0).
 * A sample under mcall with no inner category counts as MCT_CPU_MCALL_OTHER (the mcall
 * function's own work: park_m, goexit0, ...); one that is not under mcall as
 * MCT_CPU_OUTSIDE_MCALL, or MCT_CPU_GC_OUTSIDE when its inner category is GC. */
#define MCT_CPU_OUTSIDE_MCALL 0
#define MCT_CPU_MCALL_OTHER 1
#define MCT_CPU_SCHEDULE 2     /* runtime.schedule, outside findRunnable */
#define MCT_CPU_FINDRUNNABLE 3 /* runtime.findRunnable, outside the three below */
#define MCT_CPU_STEALWORK 4    /* runtime.stealWork, runqsteal, runqgrab */
#define MCT_CPU_NETPOLL 5      /* the network poller: runtime.netpoll*, epoll_wait */
#define MCT_CPU_GC 6           /* the garbage collector's functions (runtime.gc*, markroot, ...) */
#define MCT_CPU_NO_STACK 7     /* the user stack could not be read */
#define MCT_CPU_GC_OUTSIDE 8   /* not under mcall, in a GC function: background mark workers and
                                * assists run the GC on goroutines (through systemstack) */
#define MCT_CPU_CATEGORIES 9
/* In the function table only (never a sample's category): runtime.mcall itself, and the
 * functions where Go's own unwinder stops because they switch stacks (runtime.gogo, which pprof
 * shows as a root of its own): a sample in one is not under mcall. */
#define MCT_CPU_ROOT 14
#define MCT_CPU_MCALL 15

/* Per P, summed over CPUs by user space: samples by category. */
struct mct_cpu_samples {
    __u64 samples[MCT_CPU_CATEGORIES];
};

/* The function table maps text addresses to categories, 4 bits for each granule of
 * 2^granule_shift bytes, MCT_CPU_GRANULES_PER_WORD granules in each u64 word of the cpu_functions
 * array. Granules are no larger than the alignment of every function boundary where the
 * category changes, so each granule has one category. */
#define MCT_CPU_GRANULES_PER_WORD 16
#ifndef MCT_CPU_TABLE_WORDS
#define MCT_CPU_TABLE_WORDS 65536
#endif
#define MCT_MAX_STACK_DEPTH 127 /* the kernel's default perf_event_max_stack */

struct mct_cpu_config {
    __u64 table_start;   /* runtime address of the table's first granule (load bias included) */
    __u64 table_span;    /* bytes the table covers */
    __u32 tgid;          /* the target; 0 while the sampler is idle */
    __u32 granule_shift;
    __u32 collect_stacks;
    __u32 reserved;
};

#define MCT_STACK_BUFFER_WORDS 128 /* a power of two above MCT_MAX_STACK_DEPTH */
struct mct_user_stack {
    __u64 pcs[MCT_STACK_BUFFER_WORDS];
};

/* The reason table: runtime PCs of mcall's target functions, slot i is reason i. */
struct mct_reason_table {
    __u64 pcs[MCT_REASONS];
};

/* The P struct addresses the probes have seen, by P id, for the runtime-state sampler. */
struct mct_p_address {
    __u64 address;
};

#endif /* MCALLTRACE_H */
