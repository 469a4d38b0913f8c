/* empty.bpf.c: handlers that do nothing, under the names sched.bpf.c uses.
 *
 * The overhead benchmark attaches them at the same sites as the real probes: the cost of a
 * uprobe itself, which no uprobe-based tool can go below.
 */
#include <uapi/linux/ptrace.h>

int on_mcall(struct pt_regs *ctx) { return 0; }
int on_gogo(struct pt_regs *ctx) { return 0; }
int on_findrunnable(struct pt_regs *ctx) { return 0; }
int on_runqsteal(struct pt_regs *ctx) { return 0; }
int on_runqsteal_ret(struct pt_regs *ctx) { return 0; }
int on_switch_group(struct pt_regs *ctx) { return 0; }
int on_steal_group(struct pt_regs *ctx) { return 0; }
