//! Signal names accepted by the WebSocket `signal` message: Piston's `SIGNALS` map, i.e. Linux's
//! signals 1–31 and the real-time signals 34–64 under the names `kill -l` prints.

const CLASSIC: [&str; 31] = [
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGILL",
    "SIGTRAP",
    "SIGABRT",
    "SIGBUS",
    "SIGFPE",
    "SIGKILL",
    "SIGUSR1",
    "SIGSEGV",
    "SIGUSR2",
    "SIGPIPE",
    "SIGALRM",
    "SIGTERM",
    "SIGSTKFLT",
    "SIGCHLD",
    "SIGCONT",
    "SIGSTOP",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGURG",
    "SIGXCPU",
    "SIGXFSZ",
    "SIGVTALRM",
    "SIGPROF",
    "SIGWINCH",
    "SIGIO",
    "SIGPWR",
    "SIGSYS",
];

/// The number of a signal name, e.g. `SIGINT` → 2, `SIGRTMIN+3` → 37.
pub fn number(name: &str) -> Option<i32> {
    if let Some(i) = CLASSIC.iter().position(|n| *n == name) {
        return Some(i as i32 + 1);
    }
    (34..=64).find(|n| rt_name(*n).as_deref() == Some(name))
}

fn rt_name(n: i32) -> Option<String> {
    match n {
        34 => Some("SIGRTMIN".to_owned()),
        35..=49 => Some(format!("SIGRTMIN+{}", n - 34)),
        50..=63 => Some(format!("SIGRTMAX-{}", 64 - n)),
        64 => Some("SIGRTMAX".to_owned()),
        _ => None,
    }
}

/// The name of signal number `n` (`'static` for the classic ones; real-time names are leaked
/// once each through a small table).
pub fn name(n: i32) -> Option<&'static str> {
    static RT: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    if (1..=31).contains(&n) {
        return Some(CLASSIC[n as usize - 1]);
    }
    let table = RT.get_or_init(|| (34..=64).filter_map(rt_name).collect());
    (34..=64)
        .contains(&n)
        .then(|| table[n as usize - 34].as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(number("SIGINT"), Some(2));
        assert_eq!(number("SIGKILL"), Some(9));
        assert_eq!(number("SIGSYS"), Some(31));
        assert_eq!(number("SIGRTMIN"), Some(34));
        assert_eq!(number("SIGRTMIN+3"), Some(37));
        assert_eq!(number("SIGRTMAX-14"), Some(50));
        assert_eq!(number("SIGRTMAX"), Some(64));
        assert_eq!(number("SIGFOO"), None);
        assert_eq!(number("9"), None);
        for n in (1..=31).chain(34..=64) {
            assert_eq!(number(name(n).unwrap()), Some(n));
        }
        assert_eq!(name(32), None);
    }
}
