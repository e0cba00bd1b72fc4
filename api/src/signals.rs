//! Signal names accepted by the WebSocket `signal` message: Piston's `SIGNALS` map, i.e. Linux's
//! signals 1–31 and the real-time signals 34–64 under the names `kill -l` prints — the runner's
//! names ([`runner::signal_name`]), full names only (`SIGINT`, not `INT` or `2`).

/// Whether Piston's map has a name for signal `n` (32 and 33 belong to the C library).
fn is_named(n: i32) -> bool {
    (1..=31).contains(&n) || (34..=64).contains(&n)
}

/// The number of a signal name, e.g. `SIGINT` → 2, `SIGRTMIN+3` → 37.
pub fn number(name: &str) -> Option<i32> {
    let n = runner::signal_number(name)?;
    (name.starts_with("SIG") && is_named(n)).then_some(n)
}

/// The name of signal number `n`.
pub fn name(n: i32) -> Option<String> {
    is_named(n).then(|| runner::signal_name(n))
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
        assert_eq!(number("INT"), None);
        assert_eq!(number("SIG32"), None);
        for n in (1..=31).chain(34..=64) {
            assert_eq!(number(&name(n).unwrap()), Some(n));
        }
        assert_eq!(name(32), None);
    }
}
