/* sched.bpf.c: uprobes on the Go scheduler and the sched_migrate_task tracepoint.
 *
 * Every uprobe sits at the site introspection chose (an instruction the kernel emulates, before
 * the registers it reads change); never a uretprobe, which would break Go's stack handling.
 * Results are read by uprobes on each RET instruction.
 *
 * Configured by -D flags from tracer/probes/plan.py:
 *   OFF_<STRUCT>_<FIELD>  runtime struct offsets (from DWARF or the shipped table)
 *   MCT_MAX_P, MCT_MAX_M  map sizes
 *   GOGO_G_IN_DX          1 when gogo's probe site is past `MOVQ gobuf_g(BX), DX`
 *   MCALL_SP_DELTA        SP at mcall's probe site minus SP at its entry (0 or negative)
 *
 * The current g is R14 under Go's register ABI; its P is g.m.p. Aggregation is in per-CPU
 * arrays indexed by P id. A uprobe handler cannot migrate but can be preempted (the kernel runs
 * it with migration, not preemption, disabled), and another task's handler on the same CPU may
 * then update the same slot: counters are added atomically (an uncontended lock xadd on
 * CPU-local memory).
 */
#include <uapi/linux/ptrace.h>

#include "mcalltrace.h"

#ifndef MCALL_SP_DELTA
#define MCALL_SP_DELTA 0
#endif

#define ADD(field, amount) __sync_fetch_and_add(&(field), (amount))
#define INC(field) ADD(field, 1)

BPF_PERCPU_ARRAY(p_counters, struct mct_p_counters, MCT_P_SLOTS);
BPF_PERCPU_ARRAY(global_counters, struct mct_global_counters, 1);
BPF_ARRAY(m_state, struct mct_m_state, MCT_MAX_M);
BPF_ARRAY(reason_table, struct mct_reason_table, 1);
BPF_ARRAY(p_addresses, struct mct_p_address, MCT_P_SLOTS);
/* 1 + the highest P id seen: user space reads that many P slots (with the runtime's own count of
 * its Ps), not all MCT_MAX_P, so a read costs what the target's Ps are. */
BPF_ARRAY(p_high, u32, 1);
/* tid -> m.id for the target's threads: how the migration tracepoint, which runs in the context
 * of whichever CPU moves the task, recognises them. One insert per thread, on its first switch;
 * user space adds the threads that never switch goroutines (sysmon, idle Ms) with MCT_MAX_M. */
BPF_HASH(thread_m, u32, u32, 16384);
/* mcall targets missing from reason_table, by PC, named in user space. Rare by construction. */
BPF_HASH(unknown_reason_pcs, u64, u64, 256);
/* Goroutine exits by origin (see mcalltrace.h); cumulative, read and diffed by user space. */
BPF_HASH(origins, struct mct_origin_key, u64, MCT_ORIGINS);
/* mcalls by site (see mcalltrace.h); cumulative, read and diffed by user space. */
BPF_HASH(sites, struct mct_site_key, u64, MCT_SITES);
/* Event-level detail: on only while a capture window is open (one array lookup otherwise). */
BPF_ARRAY(detail_enabled, u32, 1);
BPF_PERCPU_ARRAY(group_hits, struct mct_group_hits, 1);
/* Bumped by user space before each attach of a probe group (see MCT_GROUP_*). */
BPF_ARRAY(group_generation, u32, MCT_GROUPS);
BPF_RINGBUF_OUTPUT(events, 1024); /* pages: 4 MB, about 100k events */
/* The overhead budget's alarm: while user space arms a group (a limit above 0), its hits are
 * also counted here, across CPUs, and the hit that reaches the limit disarms it and wakes the
 * budget's thread through the `alarms` ring. So a load that jumps is seen within a few hundred
 * hits, with no polling; a disarmed group costs one lookup a hit. */
BPF_ARRAY(alarm_limit, u64, MCT_GROUPS);
BPF_ARRAY(alarm_hits, u64, MCT_GROUPS);
BPF_RINGBUF_OUTPUT(alarms, 1);

struct current {
    u64 m;
    u64 p;
    u32 p_id;  /* MCT_NO_P when the thread holds no P */
    u32 m_id;  /* MCT_MAX_M when out of range */
};

static __always_inline struct mct_global_counters *globals(void)
{
    int zero = 0;
    return global_counters.lookup(&zero);
}

/* Hot paths touch the global counters only when something is rare: a failed read, a park's
 * wait reason, an unknown mcall target. Probe hit counts are not kept here at all: user space
 * derives them from the per-P counts each probe increments exactly once per hit. */
static __always_inline void note_read_error(void)
{
    struct mct_global_counters *g = globals();
    if (g)
        INC(g->read_errors);
}

static __always_inline u64 read_u64(u64 address)
{
    u64 value = 0;
    if (bpf_probe_read_user(&value, sizeof(value), (void *)address) != 0)
        note_read_error();
    return value;
}

static __always_inline u32 read_u32(u64 address)
{
    u32 value = 0;
    if (bpf_probe_read_user(&value, sizeof(value), (void *)address) != 0)
        note_read_error();
    return value;
}

static __always_inline u32 p_slot_of(u64 p)
{
    if (!p)
        return MCT_NO_P;
    u32 id = read_u32(p + OFF_P_ID);
    return id < MCT_MAX_P ? id : MCT_NO_P;
}

/* The M and P of the thread running g (R14); the M's id only when the caller needs its state. */
static __always_inline void current_of(u64 g_address, struct current *cur, int want_m_id)
{
    cur->m = g_address ? read_u64(g_address + OFF_G_M) : 0;
    cur->p = cur->m ? read_u64(cur->m + OFF_M_P) : 0;
    cur->p_id = p_slot_of(cur->p);
    cur->m_id = MCT_MAX_M;
    if (want_m_id && cur->m) {
        u64 m_id = read_u64(cur->m + OFF_M_ID);
        cur->m_id = m_id < MCT_MAX_M ? (u32)m_id : MCT_MAX_M;
    }
}

static __always_inline struct mct_p_counters *counters_of(u32 p_id)
{
    return p_counters.lookup(&p_id);
}

static __always_inline void remember_p_address(u32 p_id, u64 p)
{
    if (p_id >= MCT_MAX_P)
        return;
    struct mct_p_address *slot = p_addresses.lookup(&p_id);
    if (slot && slot->address != p)
        slot->address = p;
    int zero = 0;
    u32 *high = p_high.lookup(&zero);
    if (high && *high <= p_id)
        *high = p_id + 1; /* a racing lower write is corrected at that P's next visit */
}

static __always_inline void count_group_hit(int group)
{
    int zero = 0;
    struct mct_group_hits *hits = group_hits.lookup(&zero);
    if (hits && group < MCT_GROUPS)
        INC(hits->hits[group]);
    u64 *limit = alarm_limit.lookup(&group);
    if (!limit || !*limit)
        return;
    u64 *spent = alarm_hits.lookup(&group);
    if (!spent)
        return;
    INC(*spent);
    /* Racy by design: two CPUs may both see the limit reached and both wake user space, which
     * reads the ring in bulk; nothing is lost by that. */
    if (*spent >= *limit) {
        *limit = 0;
        u32 which = group;
        alarms.ringbuf_output(&which, sizeof(which), 0);
    }
}

static __always_inline u32 generation_of(int group)
{
    u32 *generation = group_generation.lookup(&group);
    return generation ? *generation : 0;
}

static __always_inline int detail_on(void)
{
    int zero = 0;
    u32 *enabled = detail_enabled.lookup(&zero);
    return enabled && *enabled;
}

static __always_inline void emit(u32 kind, u32 p, u32 other, u32 result, u64 goid, u64 pc)
{
    struct mct_event *event = events.ringbuf_reserve(sizeof(struct mct_event));
    if (!event) {
        /* The buffer is full: user space is behind. Drop (and count) rather than slow the target. */
        struct mct_global_counters *g = globals();
        if (g)
            INC(g->events_dropped);
        return;
    }
    event->time_ns = bpf_ktime_get_ns();
    event->goid = goid;
    event->pc = pc;
    event->kind = kind;
    event->p = p;
    event->other = other;
    event->result = result;
    events.ringbuf_submit(event, 0);
}

static __always_inline u32 log2_bucket(u64 value)
{
    u32 bucket = 0;
#pragma unroll
    for (int shift = 32; shift > 0; shift >>= 1) {
        if (value >= (1ULL << shift)) {
            value >>= shift;
            bucket += shift;
        }
    }
    return bucket < MCT_HIST_BUCKETS ? bucket : MCT_HIST_BUCKETS - 1;
}

/* Where the goroutine giving up its thread is: mcall's return address (at its entry's SP), then
 * the frame-pointer chain from BP, which at mcall's probe site is still its caller's (the probe
 * site comes before mcall touches BP). Frames sit at ever higher addresses on a goroutine's
 * stack; the walk stops at the first link that does not, or that cannot be read. */
static __always_inline void count_site(struct pt_regs *ctx, u32 reason, u32 wait_reason)
{
    struct mct_site_key key = {};
    key.reason = reason;
    key.wait_reason = wait_reason;
    key.startpc = read_u64(ctx->r14 + OFF_G_STARTPC);
    key.pcs[0] = read_u64(ctx->sp - (MCALL_SP_DELTA));
    u64 fp = ctx->bp;
#pragma unroll
    for (int i = 1; i < MCT_SITE_DEPTH; i++) {
        u64 frame[2] = {}; /* saved BP, return address */
        if (!fp || bpf_probe_read_user(frame, sizeof(frame), (void *)fp) != 0 || !frame[1])
            break;
        key.pcs[i] = frame[1];
        if (frame[0] <= fp)
            break;
        fp = frame[0];
    }
    u64 *count = sites.lookup(&key);
    if (count) {
        __sync_fetch_and_add(count, 1);
        return;
    }
    u64 one = 1;
    if (sites.update(&key, &one) != 0) {
        struct mct_global_counters *g = globals();
        if (g)
            INC(g->sites_dropped);
    }
}

/* runtime.mcall(fn func(*g)): RAX is the funcval, R14 the goroutine giving up its M. */
int on_mcall(struct pt_regs *ctx)
{
    count_group_hit(MCT_GROUP_MCALL);
    struct current cur = {};
    current_of(ctx->r14, &cur, 0);
    struct mct_p_counters *counters = counters_of(cur.p_id);
    if (!counters)
        return 0;
    INC(counters->mcalls);

    u64 fn = read_u64(ctx->ax + OFF_FUNCVAL_FN);
    int zero = 0;
    struct mct_reason_table *table = reason_table.lookup(&zero);
    u32 reason = MCT_REASON_OTHER;
    if (table) {
#pragma unroll
        for (int i = 0; i < MCT_REASON_OTHER; i++) {
            if (table->pcs[i] && table->pcs[i] == fn) {
                reason = i;
                break;
            }
        }
    }
    if (reason == MCT_REASON_OTHER) {
        struct mct_global_counters *g = globals();
        if (g)
            INC(g->unknown_reasons);
        u64 one = 1;
        u64 *seen = unknown_reason_pcs.lookup(&fn);
        if (seen)
            __sync_fetch_and_add(seen, 1);
        else
            unknown_reason_pcs.update(&fn, &one);
    }
    if (reason < MCT_REASONS)
        INC(counters->mcall_reasons[reason]);

    if (detail_on()) {
        u64 goid = 0;
        bpf_probe_read_user(&goid, sizeof(goid), (void *)(ctx->r14 + OFF_G_GOID));
        emit(MCT_EVENT_MCALL, cur.p_id, reason, 0, goid, fn);
    }

    if (reason == MCT_REASON_GOEXIT) {
        struct mct_origin_key key = {};
        key.gopc = read_u64(ctx->r14 + OFF_G_GOPC);
        key.startpc = read_u64(ctx->r14 + OFF_G_STARTPC);
        u64 *count = origins.lookup(&key);
        if (count) {
            __sync_fetch_and_add(count, 1);
        } else {
            u64 one = 1;
            if (origins.update(&key, &one) != 0) {
                struct mct_global_counters *g = globals();
                if (g)
                    INC(g->origins_dropped);
            }
        }
    }

    u8 wait_reason = 0;
    if (reason == MCT_REASON_PARK) {
        struct mct_global_counters *g = globals();
        bpf_probe_read_user(&wait_reason, sizeof(wait_reason), (void *)(ctx->r14 + OFF_G_WAITREASON));
        wait_reason &= MCT_WAIT_REASONS - 1;
        if (g)
            INC(g->wait_reasons[wait_reason]);
    }
    if (reason != MCT_REASON_GOEXIT && reason != MCT_REASON_OTHER)
        count_site(ctx, reason, wait_reason);
    return 0;
}

/* runtime.gogo(buf *gobuf): the thread switches to a goroutine. R14 is still the old g (g0). */
static __always_inline int gogo_hit(struct pt_regs *ctx)
{
    struct current cur = {};
    current_of(ctx->r14, &cur, 1);
    struct mct_p_counters *counters = counters_of(cur.p_id);
    if (counters)
        INC(counters->switches);
    if (cur.m_id >= MCT_MAX_M)
        return 0;
    struct mct_m_state *state = m_state.lookup(&cur.m_id);
    if (!state)
        return 0;
    /* Only an entry seen since this attach of the group: one from before a detached gap would
     * time the gap. */
    if (state->findrunnable_start_ns &&
        state->findrunnable_generation == generation_of(MCT_GROUP_SWITCH)) {
        u64 elapsed = bpf_ktime_get_ns() - state->findrunnable_start_ns;
        u32 looked_on = state->findrunnable_p;
        struct mct_p_counters *looking = counters_of(looked_on);
        if (looking) {
            ADD(looking->findrunnable_ns, elapsed);
            INC(looking->findrunnable_timed);
            u32 bucket = log2_bucket(elapsed);
            if (bucket < MCT_HIST_BUCKETS)
                INC(looking->findrunnable_hist[bucket]);
        }
    }
    if (state->findrunnable_start_ns)
        state->findrunnable_start_ns = 0;
    if (state->last_p != cur.p_id)
        state->last_p = cur.p_id;
    if (!state->registered) {
        u32 tid = (u32)bpf_get_current_pid_tgid();
        thread_m.update(&tid, &cur.m_id);
        state->registered = 1;
    }
    return 0;
}

/* runtime.findRunnable(): a P looks for work (and may go idle). R14 is g0. */
static __always_inline int findrunnable_hit(struct pt_regs *ctx)
{
    struct current cur = {};
    current_of(ctx->r14, &cur, 1);
    struct mct_p_counters *counters = counters_of(cur.p_id);
    if (counters)
        INC(counters->findrunnable);
    remember_p_address(cur.p_id, cur.p);
    if (cur.m_id >= MCT_MAX_M)
        return 0;
    struct mct_m_state *state = m_state.lookup(&cur.m_id);
    if (state) {
        state->findrunnable_start_ns = bpf_ktime_get_ns();
        state->findrunnable_p = cur.p_id;
        state->findrunnable_generation = generation_of(MCT_GROUP_SWITCH);
    }
    return 0;
}

/* runtime.runqsteal(pp, p2 *p, stealRunNextG bool) *g: RAX is the thief, RBX the victim. */
static __always_inline int runqsteal_hit(struct pt_regs *ctx)
{
    u32 thief = p_slot_of(ctx->ax);
    u32 victim = p_slot_of(ctx->bx);
    struct mct_p_counters *counters = counters_of(thief);
    if (counters)
        INC(counters->steal_attempts);
    struct mct_p_counters *victim_counters = counters_of(victim);
    if (victim_counters)
        INC(victim_counters->victim_attempts);

    /* Remember the thief's run queue tail: at return, the stolen goroutines beyond the one
     * returned sit between it and the new tail. Only the owner writes runqtail. */
    struct current cur = {};
    current_of(ctx->r14, &cur, 1);
    if (cur.m_id < MCT_MAX_M && ctx->ax) {
        struct mct_m_state *state = m_state.lookup(&cur.m_id);
        if (state) {
            state->steal_tail = read_u32(ctx->ax + OFF_P_RUNQTAIL);
            state->steal_victim = victim;
            state->steal_generation = generation_of(MCT_GROUP_STEAL);
        }
    }
    return 0;
}

/* Each RET of runqsteal: RAX is the stolen g, or nil when nothing was stolen. */
static __always_inline int runqsteal_ret_hit(struct pt_regs *ctx)
{
    struct current cur = {};
    current_of(ctx->r14, &cur, 1);
    struct mct_p_counters *counters = counters_of(cur.p_id);
    if (!counters)
        return 0;
    struct mct_m_state *state = cur.m_id < MCT_MAX_M ? m_state.lookup(&cur.m_id) : 0;
    /* A return whose entry this attach of the group did not see is not counted, so that
     * attempts = successes + failures holds within every sampling window. */
    if (state && state->steal_generation != generation_of(MCT_GROUP_STEAL))
        return 0;
    u64 stolen = 0;
    if (!ctx->ax) {
        INC(counters->steal_failures);
    } else {
        INC(counters->steal_successes);
        stolen = 1;
        if (state && cur.p) {
            u32 tail = read_u32(cur.p + OFF_P_RUNQTAIL);
            u32 queued = tail - state->steal_tail;
            if (queued < 256) /* a P's local run queue holds 256 */
                stolen += queued;
        }
        ADD(counters->stolen_goroutines, stolen);
    }
    if (detail_on())
        emit(MCT_EVENT_STEAL, cur.p_id, state ? state->steal_victim : MCT_NO_P, (u32)stolen, 0, 0);
    /* Each entry pairs with one result: a group's sites go in and out one after another, so a
     * result whose own entry was missed must not take an earlier one's. */
    if (state)
        state->steal_generation = 0;
    return 0;
}

/* Entry points. With uprobe_multi links each group is one link, so that its probes go in and out
 * together; the cookie of the probe site that was hit says which function it is in. Perf-event
 * uprobes (kernels before 6.6) attach each site to its own entry point instead. */
int on_gogo(struct pt_regs *ctx)
{
    count_group_hit(MCT_GROUP_SWITCH);
    return gogo_hit(ctx);
}

int on_findrunnable(struct pt_regs *ctx)
{
    count_group_hit(MCT_GROUP_SWITCH);
    return findrunnable_hit(ctx);
}

int on_runqsteal(struct pt_regs *ctx)
{
    count_group_hit(MCT_GROUP_STEAL);
    return runqsteal_hit(ctx);
}

int on_runqsteal_ret(struct pt_regs *ctx)
{
    count_group_hit(MCT_GROUP_STEAL);
    return runqsteal_ret_hit(ctx);
}

int on_switch_group(struct pt_regs *ctx)
{
    count_group_hit(MCT_GROUP_SWITCH);
    if (bpf_get_attach_cookie(ctx) == MCT_SITE_FINDRUNNABLE)
        return findrunnable_hit(ctx);
    return gogo_hit(ctx);
}

int on_steal_group(struct pt_regs *ctx)
{
    count_group_hit(MCT_GROUP_STEAL);
    if (bpf_get_attach_cookie(ctx) == MCT_SITE_RUNQSTEAL_RET)
        return runqsteal_ret_hit(ctx);
    return runqsteal_hit(ctx);
}

/* A thread of the target moves between CPUs: count it against the P it last ran. */
TRACEPOINT_PROBE(sched, sched_migrate_task)
{
    u32 tid = args->pid;
    u32 *m_id = thread_m.lookup(&tid);
    if (!m_id)
        return 0;
    u32 index = *m_id;
    u32 p_id = MCT_NO_P;
    if (index < MCT_MAX_M) {
        struct mct_m_state *state = m_state.lookup(&index);
        if (state)
            p_id = state->last_p;
    }
    struct mct_p_counters *counters = counters_of(p_id);
    if (counters)
        INC(counters->migrations);
    return 0;
}
