//! The interactive session against the mock host: lines, continuations,
//! syntax errors that do not end the shell, `exit`, and end of input.

mod mock;

use kasane_rc::{Flow, Interactive, Shell};
use mock::Mock;

/// Feeds `lines` to a session as a console would, printing each prompt
/// to the mock's stdout first; returns the shell, the mock, and the
/// status the shell ends with.
fn session(lines: &[&str]) -> (Shell, Mock, String) {
    let mut shell = Shell::new();
    let mut mock = Mock::new();
    let mut session = Interactive::new(&mut shell);
    for line in lines {
        mock.stdout.push_str(&session.prompt(&shell));
        if let Flow::Exit(status) = session.line(&mut shell, &mut mock, line) {
            return (shell, mock, status);
        }
    }
    let status = session.end(&mut shell, &mut mock);
    (shell, mock, status)
}

#[test]
fn each_line_runs_after_its_prompt() {
    let (_, mock, status) = session(&["echo one\n", "\n", "# a comment\n", "echo two\n"]);
    assert_eq!(mock.stdout, "; one\n; ; ; two\n");
    assert_eq!(status, "");
}

#[test]
fn an_unfinished_command_reads_on_after_the_continuation_prompt() {
    let (_, mock, _) = session(&[
        "echo 'two\n",
        "lines'\n",
        "echo a |\n",
        "cat\n",
        "echo b \\\n",
        "c\n",
    ]);
    assert_eq!(mock.stdout, "; \ttwo\nlines\n; \ta\n; \tb c\n");
}

#[test]
fn a_syntax_error_is_reported_and_the_shell_goes_on() {
    let (shell, mock, status) = session(&["echo a )\n", "echo after\n"]);
    assert!(
        mock.stderr.starts_with("rc: syntax error on line 1"),
        "{}",
        mock.stderr
    );
    assert_eq!(mock.stdout, "; ; after\n");
    assert_eq!(status, "");
    assert_eq!(shell.status(), "");
}

#[test]
fn end_of_input_exits_with_the_last_status() {
    let (_, _, status) = session(&["cat /missing\n"]);
    assert_eq!(status, "cat: can't open /missing");
    // A last line without a newline still runs.
    let (_, mock, status) = session(&["echo last"]);
    assert_eq!(mock.stdout, "; last\n");
    assert_eq!(status, "");
}

#[test]
fn an_unfinished_command_at_end_of_input_is_a_syntax_error() {
    let (_, mock, status) = session(&["echo 'open\n"]);
    assert!(
        mock.stderr.contains("unterminated quote"),
        "{}",
        mock.stderr
    );
    assert!(status.starts_with("rc: syntax error"), "{status}");
}

#[test]
fn exit_ends_the_session_with_its_status() {
    let (_, mock, status) = session(&["exit bye\n", "echo never\n"]);
    assert_eq!(status, "bye");
    assert_eq!(mock.stdout, "; ");
}

#[test]
fn a_here_document_continues_to_its_tag() {
    let (_, mock, status) = session(&["cat <<E\n", "hi $x\n", "E\n"]);
    assert_eq!(mock.stdout, "; \t\thi \n");
    assert_eq!(mock.stderr, "");
    assert_eq!(status, "");
}
