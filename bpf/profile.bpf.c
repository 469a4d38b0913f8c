/* profile.bpf.c: on-CPU stack samples of one process, for capture windows.
 *
 * Attached to a CPU-clock perf event on every CPU only while a capture window is open. User
 * stacks are walked by the kernel through frame pointers, which Go keeps on amd64.
 * Configured by -DTARGET_TGID.
 */
#include <uapi/linux/ptrace.h>
#include <uapi/linux/bpf_perf_event.h>

#include "mcalltrace.h"

BPF_STACK_TRACE(stack_traces, 16384);
BPF_HASH(stack_counts, struct mct_stack_key, u64, 16384);

int on_cpu_sample(struct bpf_perf_event_data *ctx)
{
    u64 id = bpf_get_current_pid_tgid();
    if ((id >> 32) != TARGET_TGID)
        return 0;
    struct mct_stack_key key = {};
    key.tid = (u32)id;
    key.user_stack_id = stack_traces.get_stackid(&ctx->regs, BPF_F_USER_STACK);
    stack_counts.increment(key);
    return 0;
}
