// A minimal program that `mcalltrace doctor` compiles and loads to prove the toolchain works:
// bcc's clang, the kernel headers it compiles against, and the kernel's BPF verifier.
#include <uapi/linux/ptrace.h>

BPF_ARRAY(doctor_hits, u64, 1);

int doctor_probe(struct pt_regs *ctx)
{
    int key = 0;
    u64 *hits = doctor_hits.lookup(&key);
    if (hits)
        __sync_fetch_and_add(hits, 1);
    return 0;
}
