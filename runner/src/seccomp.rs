//! The seccomp filter, built by hand as a classic BPF program (no dependency).
//!
//! Namespaces, cgroups, a non-root uid and an empty capability set already stop almost everything;
//! this filter closes what they do not isolate, and adds defence in depth for the privileged
//! calls. The same list applies to every syscall table a process can reach: the native one and,
//! on x86_64, the i386 one (`int 0x80`, used by 32-bit programs such as those `nasm -f elf32`
//! builds), each with its own numbers. The list (also in `docs/sandbox.md`):
//!
//! * any other syscall ABI (x32, a foreign architecture) → the process is killed;
//! * kernel keyrings: `keyctl`, `add_key`, `request_key` (keyrings are not namespaced) → EPERM;
//! * `io_uring_setup/enter/register` (large attack surface, bypasses this filter) → ENOSYS;
//! * `bpf`, `perf_event_open`, `userfaultfd` → EPERM;
//! * `kexec_load`, `kexec_file_load`, `init_module`, `finit_module`, `delete_module`, `reboot`,
//!   `swapon`, `swapoff`, `acct`, `quotactl`, `quotactl_fd`, `syslog`, `iopl`, `ioperm`,
//!   `settimeofday`, `clock_settime`, `clock_adjtime`, `vhangup` (i386 also `stime`,
//!   `clock_settime64`, `clock_adjtime64`, `vm86`, `vm86old`) → EPERM;
//! * the mount family: `mount`, `umount2` (i386 also `umount`), `pivot_root`, `move_mount`,
//!   `open_tree`, `fsopen`, `fsconfig`, `fsmount`, `fspick`, `mount_setattr` → EPERM;
//! * new namespaces: `unshare`, `setns`, and `clone` with any `CLONE_NEW*` flag → EPERM (user
//!   namespaces would hand the program a full capability set over kernel code paths);
//! * `clone3` → ENOSYS (its flags live in memory that BPF cannot read; libc falls back to clone);
//! * `modify_ldt`, `uselib` (x86 only) → EPERM (old interfaces with a history of kernel bugs);
//! * sockets: only `AF_UNIX`, `AF_INET`, `AF_INET6` (the job's network namespace has nothing but
//!   its own loopback) and `AF_NETLINK` with `NETLINK_ROUTE` (what `getifaddrs` asks, answered by
//!   the namespace) → every other family EAFNOSUPPORT (a rare family can make the kernel load its
//!   module; `AF_ALG`, `AF_PACKET`, `AF_VSOCK`, the other netlink protocols are surface no job
//!   needs); `socketpair` only `AF_UNIX`; on i386 also `socketcall(SYS_SOCKET/SYS_SOCKETPAIR, …)`
//!   → ENOSYS, since its arguments are in memory BPF cannot read (the direct calls work and are
//!   checked);
//! * `setrlimit(RLIMIT_CORE, …)` and `prlimit64(…, RLIMIT_CORE, new, NULL)` → 0 without effect:
//!   the job's core limit stays at 1 byte, which stops the kernel from starting a piped
//!   `core_pattern` helper on the host at every crash (0 would not) and is smaller than any core
//!   file; a program that lowers it (`ulimit -c 0`, test harnesses) carries on. With an old-value
//!   pointer as well → EPERM (its answer could not be filled in);
//! * any number above the highest the table knows ([`Table::max`], the kernel's table as of
//!   Linux 6.12) → ENOSYS: a call a newer kernel adds is refused until it is reviewed here, and
//!   libc falls back as on an older kernel.
//!
//! Everything else is allowed.

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JA: u16 = 0x05;
const BPF_JEQ_K: u16 = 0x15;
const BPF_JGE_K: u16 = 0x35;
const BPF_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;

const RET_ALLOW: u32 = 0x7fff_0000;
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0: u32 = 16; // low 32 bits of args[0] on little-endian
/// The low 32 bits of `args[i]`; the high ones follow.
const fn off_arg(i: u32) -> u32 {
    OFF_ARG0 + 8 * i
}

#[cfg(target_arch = "x86_64")]
const NATIVE_ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const NATIVE_ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
const I386_ARCH: u32 = 0x4000_0003; // AUDIT_ARCH_I386

const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const AF_UNIX: u32 = 1;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const AF_NETLINK: u32 = 16;
const NETLINK_ROUTE: u32 = 0;
/// socketcall(2)'s call numbers for socket(2) and socketpair(2).
const SOCKETCALL_SOCKET: u32 = 1;
const SOCKETCALL_SOCKETPAIR: u32 = 8;
const RLIMIT_CORE: u32 = 4;
/// The highest syscall number of the x86_64, i386 and generic (aarch64) tables as of Linux
/// 6.12 (`mseal`, 462; the tables share their numbers from 403 on).
const MAX_KNOWN_NR: u32 = 462;
/// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
/// CLONE_NEWNET (CLONE_NEWTIME shares its bit with the exit signal in clone(), so it is not here;
/// it is only reachable through unshare/clone3, both blocked).
const CLONE_NS_FLAGS: u32 = 0x7e02_0000;

/// One syscall table the filter covers: the numbers that need a decision, with it.
struct Table {
    arch: u32,
    rules: Vec<(u32, Rule)>,
    /// x86_64: numbers with the x32 bit select the x32 ABI.
    x32_bit: bool,
    /// Numbers above it are refused with ENOSYS.
    max: u32,
}

/// Refusals with an errno, as rules.
fn errno_rules(denied: impl IntoIterator<Item = (u32, i32)>) -> Vec<(u32, Rule)> {
    denied
        .into_iter()
        .map(|(nr, errno)| (nr, Rule::Errno(errno)))
        .collect()
}

fn native() -> Table {
    let eperm = libc::EPERM;
    let enosys = libc::ENOSYS;
    #[allow(unused_mut)]
    let mut denied = vec![
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
        denied.push((libc::SYS_iopl, eperm));
        denied.push((libc::SYS_ioperm, eperm));
        denied.push((libc::SYS_modify_ldt, eperm));
        denied.push((libc::SYS_uselib, eperm));
    }
    // Numbers as `u32`, the width BPF compares.
    let mut rules = errno_rules(denied.into_iter().map(|(nr, e)| (nr as u32, e)));
    rules.push((libc::SYS_socket as u32, Rule::Socket));
    rules.push((libc::SYS_socketpair as u32, Rule::Socketpair));
    rules.push((libc::SYS_clone as u32, Rule::Clone));
    rules.push((libc::SYS_setrlimit as u32, Rule::SetrlimitCore));
    rules.push((libc::SYS_prlimit64 as u32, Rule::PrlimitCore));
    Table {
        arch: NATIVE_ARCH,
        rules,
        x32_bit: cfg!(target_arch = "x86_64"),
        max: MAX_KNOWN_NR,
    }
}

/// The i386 table (`arch/x86/entry/syscalls/syscall_32.tbl`; the libc crate only has the native
/// numbers). The same calls as [`native`], plus i386's older variants of them.
fn i386() -> Table {
    let eperm = libc::EPERM;
    let enosys = libc::ENOSYS;
    let denied = vec![
        (288, eperm),  // keyctl
        (286, eperm),  // add_key
        (287, eperm),  // request_key
        (425, enosys), // io_uring_setup
        (426, enosys), // io_uring_enter
        (427, enosys), // io_uring_register
        (357, eperm),  // bpf
        (336, eperm),  // perf_event_open
        (374, eperm),  // userfaultfd
        (283, eperm),  // kexec_load
        (128, eperm),  // init_module
        (350, eperm),  // finit_module
        (129, eperm),  // delete_module
        (88, eperm),   // reboot
        (87, eperm),   // swapon
        (115, eperm),  // swapoff
        (51, eperm),   // acct
        (131, eperm),  // quotactl
        (443, eperm),  // quotactl_fd
        (103, eperm),  // syslog
        (110, eperm),  // iopl
        (101, eperm),  // ioperm
        (113, eperm),  // vm86old
        (166, eperm),  // vm86
        (79, eperm),   // settimeofday
        (25, eperm),   // stime
        (264, eperm),  // clock_settime
        (404, eperm),  // clock_settime64
        (343, eperm),  // clock_adjtime
        (405, eperm),  // clock_adjtime64
        (111, eperm),  // vhangup
        (21, eperm),   // mount
        (22, eperm),   // umount
        (52, eperm),   // umount2
        (217, eperm),  // pivot_root
        (429, eperm),  // move_mount
        (428, eperm),  // open_tree
        (430, eperm),  // fsopen
        (431, eperm),  // fsconfig
        (432, eperm),  // fsmount
        (433, eperm),  // fspick
        (442, eperm),  // mount_setattr
        (310, eperm),  // unshare
        (346, eperm),  // setns
        (435, enosys), // clone3
        (123, eperm),  // modify_ldt
        (86, eperm),   // uselib
    ];
    let mut rules = errno_rules(denied);
    rules.push((359, Rule::Socket));
    rules.push((360, Rule::Socketpair));
    rules.push((120, Rule::Clone));
    rules.push((102, Rule::Socketcall));
    rules.push((75, Rule::SetrlimitCore));
    rules.push((340, Rule::PrlimitCore));
    Table {
        arch: I386_ARCH,
        rules,
        x32_bit: false,
        max: MAX_KNOWN_NR,
    }
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

/// What the filter does with one syscall number of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Errno(i32),
    /// `socket(family, type, protocol)`: only the families jobs need.
    Socket,
    /// `socketpair(family, …)`: `AF_UNIX` only.
    Socketpair,
    /// `socketcall(call, args*)`: its socket() and socketpair() refused (the family is behind
    /// the pointer).
    Socketcall,
    /// `clone(flags, …)`: any CLONE_NEW* flag refused.
    Clone,
    /// `setrlimit(resource, …)`: RLIMIT_CORE succeeds without effect.
    SetrlimitCore,
    /// `prlimit64(pid, resource, new, old)`: setting RLIMIT_CORE succeeds without effect
    /// (refused when `old` asks for an answer too).
    PrlimitCore,
}

/// The instructions after a rule's number matched (the accumulator holds the number); every path
/// returns.
fn rule_body(rule: Rule) -> Vec<libc::sock_filter> {
    let on_arg0 = |code: u16, k: u32, errno: i32| {
        vec![
            stmt(BPF_LD_W_ABS, OFF_ARG0),
            jump(code, k, 0, 1),
            stmt(BPF_RET_K, RET_ERRNO | errno as u32),
            stmt(BPF_RET_K, RET_ALLOW),
        ]
    };
    let errno = |e: i32| stmt(BPF_RET_K, RET_ERRNO | e as u32);
    let allow = stmt(BPF_RET_K, RET_ALLOW);
    match rule {
        Rule::Errno(e) => vec![errno(e)],
        Rule::Socket => vec![
            stmt(BPF_LD_W_ABS, off_arg(0)),
            jump(BPF_JEQ_K, AF_UNIX, 6, 0), // → allow
            jump(BPF_JEQ_K, AF_INET, 5, 0),
            jump(BPF_JEQ_K, AF_INET6, 4, 0),
            jump(BPF_JEQ_K, AF_NETLINK, 0, 2), // → refuse
            stmt(BPF_LD_W_ABS, off_arg(2)),
            jump(BPF_JEQ_K, NETLINK_ROUTE, 1, 0),
            errno(libc::EAFNOSUPPORT),
            allow,
        ],
        Rule::Socketpair => vec![
            stmt(BPF_LD_W_ABS, off_arg(0)),
            jump(BPF_JEQ_K, AF_UNIX, 1, 0),
            errno(libc::EAFNOSUPPORT),
            allow,
        ],
        Rule::Socketcall => vec![
            stmt(BPF_LD_W_ABS, off_arg(0)),
            jump(BPF_JEQ_K, SOCKETCALL_SOCKET, 1, 0),
            jump(BPF_JEQ_K, SOCKETCALL_SOCKETPAIR, 0, 1),
            errno(libc::ENOSYS),
            allow,
        ],
        Rule::Clone => on_arg0(BPF_JSET_K, CLONE_NS_FLAGS, libc::EPERM),
        Rule::SetrlimitCore => on_arg0(BPF_JEQ_K, RLIMIT_CORE, 0),
        Rule::PrlimitCore => vec![
            stmt(BPF_LD_W_ABS, off_arg(1)),
            jump(BPF_JEQ_K, RLIMIT_CORE, 0, 10), // → allow
            // new == NULL (both halves zero): a read, allowed.
            stmt(BPF_LD_W_ABS, off_arg(2)),
            jump(BPF_JEQ_K, 0, 0, 2),
            stmt(BPF_LD_W_ABS, off_arg(2) + 4),
            jump(BPF_JEQ_K, 0, 6, 0), // → allow
            // A write: without effect when old == NULL, refused otherwise.
            stmt(BPF_LD_W_ABS, off_arg(3)),
            jump(BPF_JEQ_K, 0, 0, 3), // → EPERM
            stmt(BPF_LD_W_ABS, off_arg(3) + 4),
            jump(BPF_JEQ_K, 0, 0, 1), // → EPERM
            errno(0),
            errno(libc::EPERM),
            allow,
        ],
    }
}

/// Rules per leaf of the search tree: a leaf compares them one by one.
const LEAF: usize = 4;

/// A binary search over sorted rules (as libseccomp builds it): about log2(n) comparisons per
/// syscall instead of n, which the kernel also pays once per syscall number and architecture
/// when it prepares its allow-cache at attach time. Every path returns.
fn search(rules: &[(u32, Rule)]) -> Vec<libc::sock_filter> {
    if rules.len() <= LEAF {
        let mut p = Vec::new();
        for &(nr, rule) in rules {
            let body = rule_body(rule);
            p.push(jump(BPF_JEQ_K, nr, 0, body.len() as u8));
            p.extend(body);
        }
        p.push(stmt(BPF_RET_K, RET_ALLOW));
        return p;
    }
    let mid = rules.len() / 2;
    let (low, high) = (search(&rules[..mid]), search(&rules[mid..]));
    // nr >= rules[mid] → the high half, after the low one.
    let over = u8::try_from(low.len()).expect("a search subtree fits a BPF jump");
    let mut p = vec![jump(BPF_JGE_K, rules[mid].0, over, 0)];
    p.extend(low);
    p.extend(high);
    p
}

/// The decisions for one table, entered with its architecture already checked; ends in a return
/// on every path.
fn section(t: &Table) -> Vec<libc::sock_filter> {
    let mut p = vec![stmt(BPF_LD_W_ABS, OFF_NR)];
    if t.x32_bit {
        p.push(jump(BPF_JSET_K, X32_SYSCALL_BIT, 0, 1));
        p.push(stmt(BPF_RET_K, RET_KILL_PROCESS));
    }
    p.push(jump(BPF_JGE_K, t.max + 1, 0, 1));
    p.push(stmt(BPF_RET_K, RET_ERRNO | libc::ENOSYS as u32));
    let mut rules = t.rules.clone();
    rules.sort_by_key(|r| r.0);
    p.extend(search(&rules));
    p
}

/// Builds the filter program: dispatch on the architecture, then that table's section.
pub fn filter() -> Vec<libc::sock_filter> {
    let native = native();
    let native_section = section(&native);
    let mut p = vec![stmt(BPF_LD_W_ABS, OFF_ARCH)];
    if cfg!(target_arch = "x86_64") {
        let i386 = i386();
        // arch == i386 → jump over the native check and section
        p.push(jump(BPF_JEQ_K, i386.arch, 0, 1));
        p.push(stmt(BPF_JA, native_section.len() as u32 + 2));
        p.push(jump(BPF_JEQ_K, native.arch, 1, 0));
        p.push(stmt(BPF_RET_K, RET_KILL_PROCESS));
        p.extend(native_section);
        p.extend(section(&i386));
    } else {
        p.push(jump(BPF_JEQ_K, native.arch, 1, 0));
        p.push(stmt(BPF_RET_K, RET_KILL_PROCESS));
        p.extend(native_section);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter for the subset of classic BPF the filter uses.
    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32, arg0: u32) -> u32 {
        run_counted(prog, arch, nr, &[u64::from(arg0)]).0
    }

    /// The decision for a call with these arguments (the rest zero).
    fn run_args(prog: &[libc::sock_filter], arch: u32, nr: u32, args: &[u64]) -> u32 {
        run_counted(prog, arch, nr, args).0
    }

    /// The decision, and how many instructions it took.
    fn run_counted(prog: &[libc::sock_filter], arch: u32, nr: u32, args: &[u64]) -> (u32, usize) {
        let word = |k: u32| -> u32 {
            match k {
                OFF_NR => nr,
                OFF_ARCH => arch,
                k if (OFF_ARG0..OFF_ARG0 + 48).contains(&k) && k.is_multiple_of(4) => {
                    let i = ((k - OFF_ARG0) / 8) as usize;
                    let v = args.get(i).copied().unwrap_or(0);
                    if (k - OFF_ARG0).is_multiple_of(8) {
                        v as u32
                    } else {
                        (v >> 32) as u32
                    }
                }
                other => panic!("load {other}"),
            }
        };
        let mut pc = 0usize;
        let mut a = 0u32;
        let mut steps = 0;
        loop {
            steps += 1;
            let i = prog[pc];
            match i.code {
                BPF_LD_W_ABS => {
                    a = word(i.k);
                    pc += 1;
                }
                BPF_JA => pc += 1 + i.k as usize,
                BPF_JGE_K => pc += 1 + if a >= i.k { i.jt } else { i.jf } as usize,
                BPF_JEQ_K => pc += 1 + if a == i.k { i.jt } else { i.jf } as usize,
                BPF_JSET_K => pc += 1 + if a & i.k != 0 { i.jt } else { i.jf } as usize,
                BPF_RET_K => return (i.k, steps),
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
        assert_eq!(run(&p, 0xc000_0015, 1, 0), RET_KILL_PROCESS); // AUDIT_ARCH_PPC64LE
        assert_eq!(run(&p, nat, libc::SYS_socket as u32, 2), RET_ALLOW);
        let eafnosupport = RET_ERRNO | libc::EAFNOSUPPORT as u32;
        for family in [AF_UNIX, AF_INET, AF_INET6] {
            assert_eq!(run(&p, nat, libc::SYS_socket as u32, family), RET_ALLOW);
        }
        // AF_VSOCK, AF_ALG, AF_PACKET, AF_BLUETOOTH
        for family in [40, 38, 17, 31] {
            assert_eq!(run(&p, nat, libc::SYS_socket as u32, family), eafnosupport);
        }
        let socket = libc::SYS_socket as u32;
        assert_eq!(run_args(&p, nat, socket, &[16, 3, 0]), RET_ALLOW); // NETLINK_ROUTE
        assert_eq!(run_args(&p, nat, socket, &[16, 3, 9]), eafnosupport); // NETLINK_AUDIT
        let socketpair = libc::SYS_socketpair as u32;
        assert_eq!(run(&p, nat, socketpair, AF_UNIX), RET_ALLOW);
        assert_eq!(run(&p, nat, socketpair, AF_INET), eafnosupport);
        // the core limit: set without effect, read as usual
        let setrlimit = libc::SYS_setrlimit as u32;
        assert_eq!(run(&p, nat, setrlimit, RLIMIT_CORE), RET_ERRNO);
        assert_eq!(run(&p, nat, setrlimit, 7), RET_ALLOW); // RLIMIT_NOFILE
        let prlimit = libc::SYS_prlimit64 as u32;
        let ptr = 0x7ffd_0000_1000;
        assert_eq!(run_args(&p, nat, prlimit, &[0, 4, ptr, 0]), RET_ERRNO);
        assert_eq!(run_args(&p, nat, prlimit, &[0, 4, 0, ptr]), RET_ALLOW);
        assert_eq!(
            run_args(&p, nat, prlimit, &[0, 4, ptr, ptr]),
            RET_ERRNO | libc::EPERM as u32
        );
        assert_eq!(run_args(&p, nat, prlimit, &[0, 7, ptr, 0]), RET_ALLOW);
        // numbers past the table: ENOSYS
        assert_eq!(
            run(&p, nat, MAX_KNOWN_NR + 1, 0),
            RET_ERRNO | libc::ENOSYS as u32
        );
        assert_eq!(run(&p, nat, MAX_KNOWN_NR, 0), RET_ALLOW);
        if cfg!(target_arch = "x86_64") {
            for nr in [libc::SYS_modify_ldt, libc::SYS_uselib] {
                assert_eq!(run(&p, nat, nr as u32, 0), RET_ERRNO | libc::EPERM as u32);
            }
        }
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
        assert_eq!(run(&p, 0x4000_0028, 1, 0), RET_KILL_PROCESS); // AUDIT_ARCH_ARM
    }

    /// i386 programs (`int 0x80`) run, under the same list in i386 numbers.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn i386_decisions() {
        let p = filter();
        let eperm = RET_ERRNO | libc::EPERM as u32;
        // write, exit, brk, mmap2, execve, exit_group: what a 32-bit program needs
        for nr in [4, 1, 45, 192, 11, 252] {
            assert_eq!(run(&p, I386_ARCH, nr, 0), RET_ALLOW, "i386 syscall {nr}");
        }
        for (name, nr) in [
            ("keyctl", 288),
            ("mount", 21),
            ("unshare", 310),
            ("vm86", 166),
        ] {
            assert_eq!(run(&p, I386_ARCH, nr, 0), eperm, "i386 {name}");
        }
        assert_eq!(
            run(&p, I386_ARCH, 425, 0),
            RET_ERRNO | libc::ENOSYS as u32,
            "io_uring_setup"
        );
        // the native numbers of denied calls mean other things on i386 and back
        assert_eq!(run(&p, I386_ARCH, libc::SYS_keyctl as u32, 0), RET_ALLOW);
        assert_eq!(run(&p, NATIVE_ARCH, 288, 0), RET_ALLOW); // x86_64 288 = accept4
        // clone: fork-like allowed, namespace flags refused
        assert_eq!(run(&p, I386_ARCH, 120, 0x0120_0011), RET_ALLOW);
        assert_eq!(run(&p, I386_ARCH, 120, 0x1000_0011), eperm);
        // sockets directly and through socketcall
        assert_eq!(run(&p, I386_ARCH, 359, AF_INET), RET_ALLOW);
        assert_eq!(
            run(&p, I386_ARCH, 359, 40),
            RET_ERRNO | libc::EAFNOSUPPORT as u32
        );
        assert_eq!(
            run(&p, I386_ARCH, 102, SOCKETCALL_SOCKETPAIR),
            RET_ERRNO | libc::ENOSYS as u32
        );
        assert_eq!(run(&p, I386_ARCH, 123, 0), eperm, "modify_ldt");
        assert_eq!(run(&p, I386_ARCH, 75, RLIMIT_CORE), RET_ERRNO, "setrlimit");
        assert_eq!(
            run(&p, I386_ARCH, MAX_KNOWN_NR + 1, 0),
            RET_ERRNO | libc::ENOSYS as u32
        );
        assert_eq!(
            run(&p, I386_ARCH, 102, SOCKETCALL_SOCKET),
            RET_ERRNO | libc::ENOSYS as u32
        );
        assert_eq!(run(&p, I386_ARCH, 102, 3), RET_ALLOW); // socketcall(SYS_CONNECT)
    }

    /// What the rules say, without BPF.
    fn model(t: &Table, nr: u32, args: &[u64; 4]) -> u32 {
        if t.x32_bit && nr & X32_SYSCALL_BIT != 0 {
            return RET_KILL_PROCESS;
        }
        let errno = |e: i32| RET_ERRNO | e as u32;
        if nr > t.max {
            return errno(libc::ENOSYS);
        }
        let low = |i: usize| args[i] as u32;
        match t.rules.iter().find(|r| r.0 == nr).map(|r| r.1) {
            None => RET_ALLOW,
            Some(Rule::Errno(e)) => errno(e),
            Some(Rule::Socket) => match low(0) {
                AF_UNIX | AF_INET | AF_INET6 => RET_ALLOW,
                AF_NETLINK if low(2) == NETLINK_ROUTE => RET_ALLOW,
                _ => errno(libc::EAFNOSUPPORT),
            },
            Some(Rule::Socketpair) if low(0) != AF_UNIX => errno(libc::EAFNOSUPPORT),
            Some(Rule::Socketcall)
                if [SOCKETCALL_SOCKET, SOCKETCALL_SOCKETPAIR].contains(&low(0)) =>
            {
                errno(libc::ENOSYS)
            }
            Some(Rule::Clone) if low(0) & CLONE_NS_FLAGS != 0 => errno(libc::EPERM),
            Some(Rule::SetrlimitCore) if low(0) == RLIMIT_CORE => errno(0),
            Some(Rule::PrlimitCore) if low(1) == RLIMIT_CORE && args[2] != 0 => {
                errno(if args[3] == 0 { 0 } else { libc::EPERM })
            }
            Some(_) => RET_ALLOW,
        }
    }

    /// The search tree decides exactly as the rules say, for every number of both tables (and
    /// past them), with arguments that reach every branch of the rules, and does so in a few
    /// instructions (a linear list took about 100 for an allowed call).
    #[test]
    fn search_tree_matches_the_rules() {
        let p = filter();
        let mut tables = vec![native()];
        if cfg!(target_arch = "x86_64") {
            tables.push(i386());
        }
        let words = [
            0,
            1,
            2,
            3,
            4,
            8,
            10,
            16,
            38, // AF_ALG
            40, // AF_VSOCK
            17, // AF_PACKET
            0x0120_0011,
            0x1000_0011,
            1 << 32, // a pointer whose low half is zero
            0x7ffd_1234_5678,
            u64::MAX,
        ];
        let mut argsets = Vec::new();
        for &a0 in &words {
            argsets.push([a0, 0, 0, 0]);
            argsets.push([a0, 0, 9, 0]); // a netlink protocol other than route
        }
        // prlimit64's (pid, resource, new, old) in every combination that matters
        for resource in [RLIMIT_CORE as u64, 7, (1 << 32) | RLIMIT_CORE as u64] {
            for new in [0, 0x7ffd_0000_1000, 1 << 32] {
                for old in [0, 0x7ffd_0000_2000, 1 << 32] {
                    argsets.push([0, resource, new, old]);
                }
            }
        }
        for t in &tables {
            let mut longest = 0;
            for nr in (0..1024).chain([X32_SYSCALL_BIT | 1, u32::MAX]) {
                for args in &argsets {
                    let (got, steps) = run_counted(&p, t.arch, nr, args);
                    assert_eq!(
                        got,
                        model(t, nr, args),
                        "arch {:#x} nr {nr} args {args:x?}",
                        t.arch
                    );
                    longest = longest.max(steps);
                }
            }
            assert!(longest <= 30, "arch {:#x}: {longest} instructions", t.arch);
        }
    }

    /// Every table's section ends in a return on each path, and the jumps stay inside the program.
    #[test]
    fn jumps_stay_inside() {
        let p = filter();
        for (i, ins) in p.iter().enumerate() {
            let targets: Vec<usize> = match ins.code {
                BPF_JA => vec![i + 1 + ins.k as usize],
                BPF_JEQ_K | BPF_JSET_K | BPF_JGE_K => {
                    vec![i + 1 + ins.jt as usize, i + 1 + ins.jf as usize]
                }
                _ => vec![],
            };
            assert!(targets.iter().all(|&t| t < p.len()), "jump at {i}");
        }
        assert_eq!(p.last().map(|i| i.code), Some(BPF_RET_K));
    }
}
