//! Plan 9's cleanname(2): the shortest lexically equivalent path name.
//!
//! Rules, in cleanname(2)'s words and order: replace multiple slashes by
//! one; eliminate `.` elements; eliminate `..` together with the non-`..`
//! element before it; eliminate `..` that begins a rooted path (`/..` is
//! `/`). A relative path keeps the leading `..` it cannot cancel, and a
//! path that cleans to nothing is `.` (or `/` when rooted).
//!
//! This is purely lexical: it does not know mount points. The walker keeps
//! `..` right across mounts by remembering how each element was reached
//! (see `walk.rs`); cleanname is for names kept as text, such as the name of
//! a chan or the lines of /proc/N/ns.

use alloc::string::String;
use alloc::vec::Vec;

/// Cleans `name` as cleanname(2) does.
pub fn cleanname(name: &str) -> String {
    let rooted = name.starts_with('/');
    let mut kept: Vec<&str> = Vec::new();
    // How many leading elements of `kept` are `..` that no element can
    // cancel any more (only in a relative name).
    let mut stuck = 0;
    for element in name.split('/') {
        match element {
            "" | "." => {}
            ".." => {
                if kept.len() > stuck {
                    kept.pop();
                } else if !rooted {
                    kept.push("..");
                    stuck += 1;
                }
                // A rooted name drops `..` at the root: /.. is /.
            }
            other => kept.push(other),
        }
    }
    let mut out = String::with_capacity(name.len());
    if rooted {
        out.push('/');
    }
    for (index, element) in kept.iter().enumerate() {
        if index > 0 {
            out.push('/');
        }
        out.push_str(element);
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// `dir` and `name` joined and cleaned: the name of `name` reached from the
/// directory called `dir`.
pub fn join(dir: &str, name: &str) -> String {
    if name.starts_with('/') || dir.is_empty() {
        return cleanname(name);
    }
    let mut whole = String::with_capacity(dir.len() + 1 + name.len());
    whole.push_str(dir);
    whole.push('/');
    whole.push_str(name);
    cleanname(&whole)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples_from_cleanname2() {
        let cases = [
            ("", "."),
            (".", "."),
            ("/", "/"),
            ("//", "/"),
            ("/..", "/"),
            ("/../..", "/"),
            ("..", ".."),
            ("../..", "../.."),
            ("a/..", "."),
            ("a/../..", ".."),
            ("/a/b/../c", "/a/c"),
            ("/a/./b/", "/a/b"),
            ("a//b///c", "a/b/c"),
            ("../a/../b", "../b"),
            ("./..", ".."),
            ("/usr/glenda/../..", "/"),
            ("x/./y/../../..", ".."),
            ("#c/..", "."),
        ];
        for (raw, want) in cases {
            assert_eq!(cleanname(raw), want, "cleanname({raw:?})");
        }
    }

    #[test]
    fn join_cleans_the_whole_name() {
        assert_eq!(join("/usr/glenda", ".."), "/usr");
        assert_eq!(join("/usr/glenda", "/tmp/../bin"), "/bin");
        assert_eq!(join("/", "x"), "/x");
        assert_eq!(join("#c", "cons"), "#c/cons");
        assert_eq!(join("", "a/./b"), "a/b");
    }

    fn element() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            Just(".".into()),
            Just("..".into()),
            "[a-c]{1,2}",
        ]
    }

    fn name() -> impl Strategy<Value = String> {
        (any::<bool>(), proptest::collection::vec(element(), 0..8)).prop_map(|(rooted, parts)| {
            let body = parts.join("/");
            if rooted {
                alloc::format!("/{body}")
            } else {
                body
            }
        })
    }

    proptest! {
        #[test]
        fn idempotent(raw in name()) {
            let once = cleanname(&raw);
            prop_assert_eq!(cleanname(&once), once.clone());
        }

        #[test]
        fn clean_names_have_no_noise(raw in name()) {
            let clean = cleanname(&raw);
            prop_assert!(!clean.contains("//"));
            prop_assert!(clean == "." || !clean.split('/').any(|e| e == "."));
            prop_assert!(clean == "/" || !clean.ends_with('/'));
            prop_assert_eq!(clean.starts_with('/'), raw.starts_with('/'));
            // `..` survives only as a prefix of a relative name.
            let elements: Vec<&str> = clean.split('/').filter(|e| !e.is_empty()).collect();
            let first_other = elements.iter().position(|e| *e != "..").unwrap_or(elements.len());
            prop_assert!(elements[first_other..].iter().all(|e| *e != ".."));
            prop_assert!(!clean.starts_with('/') || first_other == 0);
        }

        #[test]
        fn agrees_with_a_stack_model(raw in name()) {
            let mut stack: Vec<String> = Vec::new();
            for e in raw.split('/') {
                match e {
                    "" | "." => {}
                    ".." => match stack.last() {
                        Some(top) if top != ".." => { stack.pop(); }
                        _ if raw.starts_with('/') => {}
                        _ => stack.push("..".into()),
                    },
                    other => stack.push(other.into()),
                }
            }
            let body = stack.join("/");
            let want = match (raw.starts_with('/'), body.is_empty()) {
                (true, _) => alloc::format!("/{body}"),
                (false, true) => ".".into(),
                (false, false) => body,
            };
            prop_assert_eq!(cleanname(&raw), want);
        }
    }
}
