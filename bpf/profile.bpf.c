/* profile.bpf.c: on-CPU samples of one process: where its CPU time goes, by P and by what part
 * of the scheduler (see MCT_CPU_* in mcalltrace.h).
 *
 * Attached to a CPU-clock perf event on every CPU at a fixed frequency, so a sample is a slice of
 * CPU time: the counts are proportional to CPU time, like a pprof CPU profile's. User stacks are
 * walked by the kernel through frame pointers, which Go keeps on amd64; the walk of a g0 stack
 * ends at (Go 1.25+) or passes through (earlier) runtime.mcall, whose frame marks the scheduler.
 *
 * Each sample's stack is classified here, against a table of function categories that user
 * space fills, so nothing per sample leaves the kernel: one array of counters per P. While a
 * capture window is open the stacks themselves are also counted (stack_counts) for a folded
 * profile.
 *
 * Configured by -D flags: OFF_G_M, OFF_M_G0, OFF_M_CURG, OFF_M_P, OFF_P_ID (runtime struct
 * offsets), MCT_MAX_P, MCT_CPU_TABLE_WORDS. The target's tgid and the table's placement are in
 * cpu_config, so one compiled program serves every process of the same Go release.
 */
#include <uapi/linux/ptrace.h>
#include <uapi/linux/bpf_perf_event.h>

#include "mcalltrace.h"

BPF_ARRAY(cpu_config, struct mct_cpu_config, 1);
BPF_ARRAY(cpu_functions, u64, MCT_CPU_TABLE_WORDS);
BPF_PERCPU_ARRAY(cpu_samples, struct mct_cpu_samples, MCT_P_SLOTS);
BPF_PERCPU_ARRAY(stack_buffer, struct mct_user_stack, 1);
BPF_STACK_TRACE(stack_traces, 16384);
BPF_HASH(stack_counts, struct mct_stack_key, u64, 16384);

static __always_inline u64 read_user_u64(u64 address)
{
    u64 value = 0;
    bpf_probe_read_user(&value, sizeof(value), (void *)address);
    return value;
}

/* The P whose work this sample is: the current g is in R14 under Go's register ABI, and its P is
 * g.m.p. R14 holds something else in C code (cgo, the VDSO) and in some assembly, so g is only
 * believed when its M agrees that g is the M's g0 or current goroutine. */
static __always_inline u32 p_slot(u64 g)
{
    if (g == 0)
        return MCT_NO_P;
    u64 m = read_user_u64(g + OFF_G_M);
    if (m == 0)
        return MCT_NO_P;
    if (read_user_u64(m + OFF_M_G0) != g && read_user_u64(m + OFF_M_CURG) != g)
        return MCT_NO_P;
    u64 p = read_user_u64(m + OFF_M_P);
    if (p == 0)
        return MCT_NO_P;
    u32 id = MCT_NO_P;
    bpf_probe_read_user(&id, sizeof(id), (void *)(p + OFF_P_ID));
    return id < MCT_MAX_P ? id : MCT_NO_P;
}

static __always_inline u32 function_category(struct mct_cpu_config *config, u64 pc)
{
    u64 offset = pc - config->table_start; /* below the table: wraps to far beyond its span */
    if (offset >= config->table_span)
        return 0;
    u64 granule = offset >> (config->granule_shift & 63);
    u32 word_index = granule / MCT_CPU_GRANULES_PER_WORD;
    u64 *word = cpu_functions.lookup(&word_index);
    if (!word)
        return 0;
    return (*word >> ((granule % MCT_CPU_GRANULES_PER_WORD) * 4)) & 0xf;
}

static __always_inline u32 classify(struct mct_cpu_config *config, struct mct_user_stack *stack, long bytes)
{
    u32 frames = bytes / sizeof(u64);
    u32 inner = 0;
    for (u32 i = 0; i < MCT_MAX_STACK_DEPTH; i++) {
        /* Hidden from the compiler at each step: otherwise it merges the two bounds into one
         * equality test, from which the verifier cannot tell that the loop stays in the buffer. */
        u32 end = frames;
        asm volatile("" : "+r"(end));
        if (i >= end)
            break;
        u64 pc = stack->pcs[i];
        /* Callers' frames hold return addresses, which may already be in the next function
         * when a call is a function's last instruction. */
        if (i > 0)
            pc -= 1;
        u32 category = function_category(config, pc);
        if (category == MCT_CPU_MCALL)
            return inner ? inner : MCT_CPU_MCALL_OTHER;
        if (category == MCT_CPU_ROOT)
            break;
        if (category != 0 && inner == 0)
            inner = category;
    }
    return inner == MCT_CPU_GC ? MCT_CPU_GC_OUTSIDE : MCT_CPU_OUTSIDE_MCALL;
}

int on_cpu_sample(struct bpf_perf_event_data *ctx)
{
    int zero = 0;
    struct mct_cpu_config *config = cpu_config.lookup(&zero);
    u64 id = bpf_get_current_pid_tgid();
    if (!config || config->tgid == 0 || (id >> 32) != config->tgid)
        return 0;

    /* The thread's user registers, also when the sample interrupted it in the kernel. */
    struct pt_regs *user_regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
    u64 g = 0;
    bpf_probe_read_kernel(&g, sizeof(g), &user_regs->r14);
    u32 slot = p_slot(g);

    u32 category = MCT_CPU_NO_STACK;
    struct mct_user_stack *stack = stack_buffer.lookup(&zero);
    if (stack) {
        long bytes = bpf_get_stack(ctx, stack->pcs, sizeof(stack->pcs), BPF_F_USER_STACK);
        if (bytes > 0)
            category = classify(config, stack, bytes);
    }
    struct mct_cpu_samples *samples = cpu_samples.lookup(&slot);
    if (samples && category < MCT_CPU_CATEGORIES)
        __sync_fetch_and_add(&samples->samples[category], 1);

    if (config->collect_stacks) {
        struct mct_stack_key key = {};
        key.tid = (u32)id;
        key.user_stack_id = stack_traces.get_stackid(&ctx->regs, BPF_F_USER_STACK);
        stack_counts.increment(key);
    }
    return 0;
}
