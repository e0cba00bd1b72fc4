#!/usr/bin/env python3
"""Where a `perf record -a -g` profile of the API load spends its CPU, for BENCHMARKS.md.

    perf script -i perf.data | scripts/perf-breakdown.py [--comm NAME]

Prints the share of all samples (idle included) per process name, then per kernel path: the
share of samples whose call chain passes through each of the functions below (inclusive, so
the rows overlap: creating a network namespace is also part of clone3). With `--comm NAME`,
also the samples of that process name alone: their share per system call and per function
they were taken in (with its binary).
"""
import argparse
import collections
import re
import sys

# Kernel functions that mark the sandbox's per-job work, with what they stand for.
PATHS = [
    ("copy_net_ns", "network namespace: creation"),
    ("cleanup_net", "network namespace: destruction (kernel worker)"),
    ("__do_sys_clone3", "clone3 (zygote forking init, with its namespaces)"),
    ("copy_process", "every fork, clone and vfork"),
    ("do_exit", "every process exit (namespace teardown included)"),
    ("do_execveat_common", "execve"),
    ("path_mount", "mount"),
    ("ksys_unshare", "unshare (the job's mount namespace)"),
    ("do_seccomp", "attaching the seccomp filter"),
    ("cgroup_mkdir", "cgroup mkdir"),
    ("cgroup_rmdir", "cgroup rmdir"),
    ("kernfs_fop_open", "opening cgroup control files"),
    ("exc_page_fault", "page faults"),
]
FRAME = re.compile(r"\s(\S+?)\+0x")
# A call-chain line: address, function+offset, (binary).
LINE = re.compile(r"^\s*[0-9a-f]+\s+(.+?)\s+\((.*)\)$")
SYSCALL = re.compile(r"^__(?:x64|do)_sys_(\w+)")


def stem(comm: str) -> str:
    """Kernel threads (kworker/u8:2-events, ksoftirqd/0) and numbered threads (job-123-4)
    grouped by their stem."""
    return re.sub(r"(-\d+)+$", "", comm.split("/")[0])


def one_process(samples: list[list[str]], comm: str) -> None:
    """Where the samples of one process name were taken: per system call, per function."""
    mine = [lines for lines in samples if stem(lines[0].split()[0]) == comm]
    if not mine:
        print(f"\nno samples of {comm}")
        return
    by_syscall = collections.Counter()
    by_function = collections.Counter()
    for lines in mine:
        chain = [m.groups() for line in lines[1:] for m in [LINE.match(line)] if m]
        calls = [c.group(1) for f, _ in chain for c in [SYSCALL.match(f)] if c]
        by_syscall[calls[0] if calls else "(no system call: user space, faults, interrupts)"] += 1
        if chain:
            function, binary = chain[0]
            by_function[f"{function.split('+0x')[0]} ({binary.rsplit('/', 1)[-1]})"] += 1
    n = len(mine)
    print(f"\n{comm}: {n} samples\n\nby system call:")
    for call, k in by_syscall.most_common(12):
        print(f"  {100 * k / n:5.1f} %  {call}")
    print("\nby function sampled in:")
    for function, k in by_function.most_common(12):
        print(f"  {100 * k / n:5.1f} %  {function}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Share of a perf profile per process and path.")
    parser.add_argument("--comm", help="also break down the samples of this process name")
    args = parser.parse_args()
    samples = [s for s in sys.stdin.read().split("\n\n") if s.strip()]
    total = len(samples)
    if total == 0:
        sys.exit("no samples on stdin (pipe `perf script` output in)")
    by_comm = collections.Counter()
    by_path = collections.Counter()
    for sample in samples:
        lines = sample.strip().split("\n")
        by_comm[stem(lines[0].split()[0])] += 1
        # `do_execveat_common.isra.0` counts as `do_execveat_common`.
        frames = {
            m.group(1).split(".")[0] for line in lines[1:] for m in [FRAME.search(line)] if m
        }
        for function, _ in PATHS:
            if function in frames:
                by_path[function] += 1
    print(f"{total} samples\n\nby process name:")
    for comm, n in by_comm.most_common(15):
        print(f"  {100 * n / total:5.1f} %  {comm}")
    print("\nby kernel path (inclusive):")
    for function, meaning in PATHS:
        print(f"  {100 * by_path[function] / total:5.1f} %  {function:<20} {meaning}")
    if args.comm:
        one_process([s.strip().split("\n") for s in samples], args.comm)


if __name__ == "__main__":
    main()
