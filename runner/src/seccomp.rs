//! The seccomp deny list, built by hand as a classic BPF program (no dependency).
//!
//! Namespaces, cgroups, a non-root uid and an empty capability set already stop almost everything;
//! this filter closes what they do not isolate, and adds defence in depth for the privileged
//! calls. The list (also in `docs/sandbox.md`):
//!
//! * a syscall ABI other than the native one (i386 `int 0x80`, x32) → the process is killed;
//! * kernel keyrings: `keyctl`, `add_key`, `request_key` (keyrings are not namespaced) → EPERM;
//! * `io_uring_setup/enter/register` (large attack surface, bypasses this filter) → ENOSYS;
//! * `bpf`, `perf_event_open`, `userfaultfd` → EPERM;
//! * `kexec_load`, `kexec_file_load`, `init_module`, `finit_module`, `delete_module`, `reboot`,
//!   `swapon`, `swapoff`, `acct`, `quotactl`, `quotactl_fd`, `syslog`, `iopl`, `ioperm`,
//!   `settimeofday`, `clock_settime`, `clock_adjtime`, `vhangup` → EPERM;
//! * the mount family: `mount`, `umount2`, `pivot_root`, `move_mount`, `open_tree`, `fsopen`,
//!   `fsconfig`, `fsmount`, `fspick`, `mount_setattr` → EPERM;
//! * new namespaces: `unshare`, `setns`, and `clone` with any `CLONE_NEW*` flag → EPERM (user
//!   namespaces would hand the program a full capability set over kernel code paths);
//! * `clone3` → ENOSYS (its flags live in memory that BPF cannot read; libc falls back to clone);
//! * `socket(AF_VSOCK, …)` → EAFNOSUPPORT (vsock is not network-namespaced).
//!
//! Everything else is allowed.

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0: u32 = 16; // low 32 bits of args[0] on little-endian

#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64

const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const AF_VSOCK: u32 = 40;
/// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
/// CLONE_NEWNET (CLONE_NEWTIME shares its bit with the exit signal in clone(), so it is not here;
/// it is only reachable through unshare/clone3, both blocked).
const CLONE_NS_FLAGS: u32 = 0x7e02_0000;

/// Syscalls refused with an errno, and the errno.
fn denied() -> Vec<(libc::c_long, i32)> {
    let eperm = libc::EPERM;
    let enosys = libc::ENOSYS;
    #[allow(unused_mut)]
    let mut v = vec![
        (libc::SYS_keyctl, eperm),
        (libc::SYS_add_key, eperm),
        (libc::SYS_request_key, eperm),
        (libc::SYS_io_uring_setup, enosys),
        (libc::SYS_io_uring_enter, enosys),
        (libc::SYS_io_uring_register, enosys),
        (libc::SYS_bpf, eperm),
        (libc::SYS_perf_event_open, eperm),
        (libc::SYS_userfaultfd, eperm),
        (libc::SYS_kexec_load, eperm),
        (libc::SYS_kexec_file_load, eperm),
        (libc::SYS_init_module, eperm),
        (libc::SYS_finit_module, eperm),
        (libc::SYS_delete_module, eperm),
        (libc::SYS_reboot, eperm),
        (libc::SYS_swapon, eperm),
        (libc::SYS_swapoff, eperm),
        (libc::SYS_acct, eperm),
        (libc::SYS_quotactl, eperm),
        (libc::SYS_quotactl_fd, eperm),
        (libc::SYS_syslog, eperm),
        (libc::SYS_settimeofday, eperm),
        (libc::SYS_clock_settime, eperm),
        (libc::SYS_clock_adjtime, eperm),
        (libc::SYS_vhangup, eperm),
        (libc::SYS_mount, eperm),
        (libc::SYS_umount2, eperm),
        (libc::SYS_pivot_root, eperm),
        (libc::SYS_move_mount, eperm),
        (libc::SYS_open_tree, eperm),
        (libc::SYS_fsopen, eperm),
        (libc::SYS_fsconfig, eperm),
        (libc::SYS_fsmount, eperm),
        (libc::SYS_fspick, eperm),
        (libc::SYS_mount_setattr, eperm),
        (libc::SYS_unshare, eperm),
        (libc::SYS_setns, eperm),
        (libc::SYS_clone3, enosys),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        v.push((libc::SYS_iopl, eperm));
        v.push((libc::SYS_ioperm, eperm));
    }
    v
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Builds the filter program.
pub fn filter() -> Vec<libc::sock_filter> {
    let mut p = vec![
        stmt(BPF_LD_W_ABS, OFF_ARCH),
        jump(BPF_JEQ_K, NATIVE_ARCH, 1, 0),
        stmt(BPF_RET_K, RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, OFF_NR),
    ];
    if cfg!(target_arch = "x86_64") {
        p.push(jump(BPF_JSET_K, X32_SYSCALL_BIT, 0, 1));
        p.push(stmt(BPF_RET_K, RET_KILL_PROCESS));
    }
    for (nr, errno) in denied() {
        p.push(jump(BPF_JEQ_K, nr as u32, 0, 1));
        p.push(stmt(BPF_RET_K, RET_ERRNO | errno as u32));
    }
    // socket(AF_VSOCK, ...)
    p.push(jump(BPF_JEQ_K, libc::SYS_socket as u32, 0, 4));
    p.push(stmt(BPF_LD_W_ABS, OFF_ARG0));
    p.push(jump(BPF_JEQ_K, AF_VSOCK, 0, 1));
    p.push(stmt(BPF_RET_K, RET_ERRNO | libc::EAFNOSUPPORT as u32));
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    // clone(flags with CLONE_NEW*, ...)
    p.push(jump(BPF_JEQ_K, libc::SYS_clone as u32, 0, 4));
    p.push(stmt(BPF_LD_W_ABS, OFF_ARG0));
    p.push(jump(BPF_JSET_K, CLONE_NS_FLAGS, 0, 1));
    p.push(stmt(BPF_RET_K, RET_ERRNO | libc::EPERM as u32));
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    p.push(stmt(BPF_RET_K, RET_ALLOW));
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter for the subset of classic BPF the filter uses.
    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, arg0: u32) -> u32 {
        let mut pc = 0usize;
        let mut a = 0u32;
        loop {
            let i = prog[pc];
            match i.code {
                BPF_LD_W_ABS => {
                    a = match i.k {
                        OFF_NR => nr,
                        OFF_ARCH => arch,
                        OFF_ARG0 => arg0,
                        other => panic!("load {other}"),
                    };
                    pc += 1;
                }
                BPF_JEQ_K => pc += 1 + if a == i.k { i.jt } else { i.jf } as usize,
                BPF_JSET_K => pc += 1 + if a & i.k != 0 { i.jt } else { i.jf } as usize,
                BPF_RET_K => return i.k,
                other => panic!("opcode {other}"),
            }
        }
    }

    #[test]
    fn filter_decisions() {
        let p = filter();
        assert!(p.len() < 4096);
        let nat = NATIVE_ARCH;
        assert_eq!(run(&p, nat, libc::SYS_read as u32, 0), RET_ALLOW);
        assert_eq!(
            run(&p, nat, libc::SYS_keyctl as u32, 0),
            RET_ERRNO | libc::EPERM as u32
        );
        assert_eq!(
            run(&p, nat, libc::SYS_io_uring_setup as u32, 0),
            RET_ERRNO | libc::ENOSYS as u32
        );
        assert_eq!(
            run(&p, nat, libc::SYS_mount as u32, 0),
            RET_ERRNO | libc::EPERM as u32
        );
        assert_eq!(
            run(&p, 0x4000_0003, libc::SYS_read as u32, 0),
            RET_KILL_PROCESS
        );
        assert_eq!(run(&p, nat, libc::SYS_socket as u32, 2), RET_ALLOW);
        assert_eq!(
            run(&p, nat, libc::SYS_socket as u32, AF_VSOCK),
            RET_ERRNO | libc::EAFNOSUPPORT as u32
        );
        // fork-like clone (SIGCHLD | CLONE_CHILD_SETTID ...) is fine, a namespace clone is not.
        assert_eq!(run(&p, nat, libc::SYS_clone as u32, 0x0120_0011), RET_ALLOW);
        assert_eq!(
            run(&p, nat, libc::SYS_clone as u32, 0x1000_0011),
            RET_ERRNO | libc::EPERM as u32
        );
        if cfg!(target_arch = "x86_64") {
            assert_eq!(run(&p, nat, X32_SYSCALL_BIT | 1, 0), RET_KILL_PROCESS);
        }
        assert_eq!(run(&p, nat, libc::SYS_execve as u32, 0), RET_ALLOW);
    }
}
