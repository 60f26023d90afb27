//! Proptest: no text makes the parser or the interpreter panic.

mod mock;

use kasane_rc::{parse, Shell};
use mock::Mock;
use proptest::prelude::*;

/// Text built mostly from the characters the lexer treats specially.
fn shellish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "a",
            "x",
            "=",
            "'",
            "''",
            "$",
            "$#",
            "^",
            "(",
            ")",
            "|",
            "|[2]",
            ">",
            ">>",
            "<",
            ">[2=1]",
            ">[2=]",
            "[",
            "]",
            ";",
            "\n",
            "#",
            " ",
            "\\\n",
            "echo",
            "cat",
            "wc",
            "bind",
            "-a",
            "mount",
            "unmount",
            "cd",
            "exit",
            "/f",
            "&",
            "{",
            "}",
            "&&",
            "||",
            "!",
            "~",
            "*",
            "?",
            "if",
            "if not",
            "for(i in a b)",
            "for(i)",
            "switch",
            "case",
            "fn",
            "f",
            "`{",
            "$\"",
            "$x(",
            "eval",
            "shift",
            "whatis",
            ". /f",
            "<<E",
            "<<'E'",
            "E\n",
        ]),
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn any_text_parses_or_fails_cleanly(text in any::<String>()) {
        let _ = parse(&text);
    }

    #[test]
    fn shellish_text_runs_or_fails_cleanly(text in shellish()) {
        let mut shell = Shell::new();
        let mut mock = Mock::new();
        mock.files.insert("/f".into(), b"data\n".to_vec());
        let _ = shell.run(&mut mock, &text);
        prop_assert!(mock.no_leaks(), "fds leaked by {:?}", text);
    }
}
