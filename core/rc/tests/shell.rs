//! The interpreter against a mock host: every feature and every error.

mod mock;

use kasane_rc::{Flow, Shell};
use mock::{run, Mock};

#[test]
fn echo_and_quoting() {
    let (shell, mock, flow) = run("echo hello   world; echo -n 'it''s  '#x\necho ''");
    assert_eq!(flow, Flow::Continue);
    assert_eq!(mock.stdout, "hello world\nit's  \n");
    assert_eq!(shell.status(), "");
    assert!(mock.no_leaks());
}

#[test]
fn comments_and_line_continuation() {
    let (_, mock, _) = run("# a comment\necho a # another\necho b \\\n c\n\n");
    assert_eq!(mock.stdout, "a\nb c\n");
}

#[test]
fn variables_lists_and_counts() {
    let source = "x=hello\nl=(a b c)\necho $x $l $#l $#nothing $nothing\n\
                  echo $l^.c x$x (1 2 3)^$l\necho $x^$l";
    let (_, mock, _) = run(source);
    assert_eq!(
        mock.stdout,
        "hello a b c 3 0\na.c b.c c.c xhello 1a 2b 3c\nhelloa hellob helloc\n"
    );
}

#[test]
fn concatenation_errors_set_status() {
    let (shell, mock, _) = run("a=(1 2) b=(1 2 3)\necho $a^$b");
    assert_eq!(
        mock.stderr,
        "rc: mismatched list lengths in concatenation\n"
    );
    assert_eq!(
        shell.status(),
        "rc: mismatched list lengths in concatenation"
    );
    assert_eq!(mock.stdout, "");
    let (shell, _, _) = run("echo x^$empty");
    assert_eq!(shell.status(), "rc: null list in concatenation");
}

#[test]
fn equals_is_text_outside_assignments() {
    let (shell, mock, _) = run("echo a=b = c==d; x = 1; echo $x; 'y'=2");
    assert_eq!(mock.stdout, "a=b = c==d\n1\n");
    // A quoted name is not an assignment: it is a command named "y=2".
    assert_eq!(shell.status(), "y=2: file does not exist");
}

#[test]
fn local_assignments_last_for_one_command() {
    let (shell, mock, _) = run("x=global\nx=local args $x\necho $x");
    // Expansion happens before the assignment takes effect (rc(1)).
    assert_eq!(mock.stdout, "[global]\nglobal\n");
    let env = &mock.last_env;
    assert!(env.contains(&("x".into(), vec!["local".into()])));
    assert_eq!(shell.var("x"), Some(&["global".to_string()][..]));
    // A local assignment for a builtin: cd sees $home only for itself.
    let (shell, mock, _) = run("home=/usr/glenda cd; echo $#home");
    assert_eq!(mock.cwd, "/usr/glenda");
    assert_eq!(mock.stdout, "0\n");
    assert_eq!(shell.status(), "");
}

#[test]
fn path_search_and_command_not_found() {
    let (shell, mock, _) = run("args 1 '2 3'");
    assert_eq!(mock.stdout, "[1][2 3]\n");
    assert_eq!(shell.status(), "");
    let (shell, mock, _) = run("path=(/usr/bin /bin)\nargs2 x; args y");
    assert_eq!(mock.stdout, "[x]\n[y]\n");
    assert_eq!(shell.status(), "");
    assert_eq!(
        mock.log,
        ["try /usr/bin/args2", "try /usr/bin/args", "try /bin/args"]
    );
    let (shell, mock, _) = run("nosuch");
    // As rc words it: no path made up from $path.
    assert_eq!(mock.stderr, "nosuch: file does not exist\n");
    assert_eq!(shell.status(), "nosuch: file does not exist");
    let (_, mock, _) = run("/bin/args abs; ./x");
    assert_eq!(mock.log, ["try /bin/args", "try ./x"]);
}

#[test]
fn status_after_failure_and_success() {
    let (shell, mock, _) = run("fail boom");
    assert_eq!(shell.status(), "fail: boom");
    assert!(!shell.succeeded());
    assert_eq!(mock.stderr, "fail: boom\n");
    let (shell, mock, _) = run("fail boom; echo $status; args ok; echo [$status]");
    assert_eq!(mock.stdout, "fail: boom\n[ok]\n[]\n");
    assert!(shell.succeeded());
}

#[test]
fn redirections_write_append_read() {
    let (shell, mock, _) = run("echo one > /f; echo two >> /f; cat < /f > /g; echo three > /f");
    assert_eq!(mock.files["/f"], b"three\n");
    assert_eq!(mock.files["/g"], b"one\ntwo\n");
    assert_eq!(shell.status(), "");
    assert!(mock.no_leaks());
}

#[test]
fn redirections_of_other_fds() {
    let (_, mock, _) = run("fail x >[2] /err; fail y >[2=1] >/out; fail z >[2=]");
    assert_eq!(mock.files["/err"], b"fail: x\n");
    assert_eq!(mock.files["/out"], b"");
    assert_eq!(mock.stdout, "fail: y\n");
    assert_eq!(mock.stderr, "");
    assert!(mock.no_leaks());
    // Left to right: fd 2 copies fd 1 before fd 1 moves to /out.
    let (_, mock, _) = run("fail w >/out2 >[2=1]");
    assert_eq!(mock.files["/out2"], b"fail: w\n");
}

#[test]
fn redirection_alone_creates_the_file() {
    let (shell, mock, _) = run(">/empty");
    assert_eq!(mock.files["/empty"], b"");
    assert_eq!(shell.status(), "");
    assert!(mock.no_leaks());
}

#[test]
fn redirection_errors() {
    let (shell, mock, _) = run("echo hi > /forbidden/x");
    assert_eq!(
        mock.stderr,
        "rc: can't open /forbidden/x: permission denied\n"
    );
    assert_eq!(
        shell.status(),
        "rc: can't open /forbidden/x: permission denied"
    );
    assert_eq!(mock.stdout, "");
    let (shell, mock, _) = run("cat < /missing > /out");
    assert_eq!(
        shell.status(),
        "rc: can't open /missing: '/missing' file does not exist"
    );
    assert!(!mock.files.contains_key("/out"));
    let (shell, mock, _) = run("l=(a b); echo > $l");
    assert_eq!(shell.status(), "rc: redirection needs one file name, not 2");
    assert!(mock.no_leaks());
    let (shell, _, _) = run("echo >[1=7]");
    assert_eq!(shell.status(), "rc: fd 7 is not open");
    // The redirection's earlier files are closed when a later one fails.
    let (_, mock, _) = run("echo >/a </missing");
    assert!(mock.no_leaks());
}

#[test]
fn pipelines() {
    let (shell, mock, _) = run("echo hello | wc; cat /nope | wc");
    assert_eq!(mock.stdout, "1 6\n0 0\n");
    // rc(1): the statuses of the pipeline's commands, joined by '|'.
    assert_eq!(shell.status(), "cat: can't open /nope|");
    assert!(!shell.succeeded());
    assert!(mock.no_leaks());
    let (shell, mock, _) = run("echo a b | cat | cat | wc > /count");
    assert_eq!(mock.files["/count"], b"1 4\n");
    assert_eq!(shell.status(), "|||");
    assert!(shell.succeeded());
    assert!(mock.no_leaks());
}

#[test]
fn pipe_of_another_fd_and_multiline_pipeline() {
    let (_, mock, _) = run("fail oops |[2] cat\n");
    assert_eq!(mock.stdout, "fail: oops\n");
    let (_, mock, _) = run("echo x |\n\n wc");
    assert_eq!(mock.stdout, "1 2\n");
}

#[test]
fn pipeline_failures() {
    let (shell, mock, _) = run("echo a | nosuch | wc");
    assert_eq!(shell.status(), "|nosuch: file does not exist|");
    assert_eq!(mock.stdout, "0 0\n");
    assert!(mock.no_leaks());
    let mut shell = Shell::new();
    let mut mock = Mock::new();
    mock.fail_pipe = true;
    shell.run(&mut mock, "echo a | wc");
    assert_eq!(shell.status(), "rc: can't make a pipe: no more pipes");
    assert_eq!(mock.stdout, "");
    // `exit` in a pipeline ends only its element.
    let (shell, _, flow) = run("exit gone | wc");
    assert_eq!(flow, Flow::Continue);
    assert_eq!(shell.status(), "gone|");
}

#[test]
fn cd() {
    let (shell, mock, _) = run("cd /usr");
    assert_eq!((mock.cwd.as_str(), shell.status().as_str()), ("/usr", ""));
    let (shell, mock, _) = run("cd /nonexistent");
    assert_eq!(
        mock.stderr,
        "cd: /nonexistent: '/nonexistent' file does not exist\n"
    );
    assert_eq!(
        shell.status(),
        "cd: /nonexistent: '/nonexistent' file does not exist"
    );
    let (shell, _, _) = run("cd");
    assert_eq!(shell.status(), "cd: $home is not set");
    let (shell, mock, _) = run("home=/usr/glenda; cd; echo $status");
    assert_eq!(
        (mock.cwd.as_str(), shell.status().as_str()),
        ("/usr/glenda", "")
    );
    let (shell, mock, _) = run("cd a b");
    assert_eq!(mock.stderr, "usage: cd [directory]\n");
    assert_eq!(shell.status(), "cd: usage");
}

#[test]
fn bind_flags() {
    let (shell, mock, _) = run(
        "bind '#c' /dev; bind -b /a /b; bind -a /a /b; bind -c /a /b; bind -bc /a /b; \
         bind -a -c /a /b; bind -C /a /b; bind -- -x /b",
    );
    assert_eq!(shell.status(), "");
    assert_eq!(
        mock.log,
        [
            "bind #c /dev 0",
            "bind /a /b 1",
            "bind /a /b 2",
            "bind /a /b 4",
            "bind /a /b 5",
            "bind /a /b 6",
            "bind /a /b 16",
            "bind -x /b 0",
        ]
    );
}

#[test]
fn bind_errors() {
    let (shell, mock, _) = run("bind -x /a /b");
    assert_eq!(
        mock.stderr,
        "bind: bad flag -x\nusage: bind [-b|-a|-c|-bc|-ac] new old\n"
    );
    assert_eq!(shell.status(), "bind: usage");
    assert!(mock.log.is_empty());
    let (shell, _, _) = run("bind /a");
    assert_eq!(shell.status(), "bind: usage");
    let (shell, mock, _) = run("bind -ab /a /b");
    assert_eq!(
        mock.stderr,
        "bind: -a and -b conflict\nusage: bind [-b|-a|-c|-bc|-ac] new old\n"
    );
    assert_eq!(shell.status(), "bind: usage");
    let (shell, mock, _) = run("bind /a /nonexistent");
    assert_eq!(
        mock.stderr,
        "bind: /a /nonexistent: '/nonexistent' file does not exist\n"
    );
    assert_eq!(
        shell.status(),
        "bind: /a /nonexistent: '/nonexistent' file does not exist"
    );
    // The error goes to the command's fd 2.
    let (_, mock, _) = run("bind -q /a /b >[2] /err");
    assert_eq!(
        mock.files["/err"],
        b"bind: bad flag -q\nusage: bind [-b|-a|-c|-bc|-ac] new old\n"
    );
}

#[test]
fn mount() {
    let (shell, mock, _) =
        run("mount -ac /srv/ram /tmp; mount /srv/ram /n/ram spec; mount -bC /srv/ram /x");
    assert_eq!(shell.status(), "");
    let mounts: Vec<_> = mock.log.iter().filter(|l| l.starts_with("mount")).collect();
    assert_eq!(
        mounts,
        [
            "mount /srv/ram /tmp '' 6",
            "mount /srv/ram /n/ram 'spec' 0",
            "mount /srv/ram /x '' 17",
        ]
    );
    assert!(mock.log.contains(&"open /srv/ram ReadWrite".to_string()));
    assert!(mock.no_leaks());
}

#[test]
fn mount_errors() {
    let (shell, mock, _) = run("mount /srv/none /n");
    assert_eq!(
        mock.stderr,
        "mount: can't open /srv/none: '/srv/none' file does not exist\n"
    );
    assert_eq!(
        shell.status(),
        "mount: can't open /srv/none: '/srv/none' file does not exist"
    );
    let (shell, mock, _) = run("mount /srv/ram /nonexistent");
    assert_eq!(
        shell.status(),
        "mount: /srv/ram /nonexistent: '/nonexistent' file does not exist"
    );
    assert!(mock.no_leaks());
    let (shell, mock, _) = run("mount -z /srv/ram /n");
    assert_eq!(
        mock.stderr,
        "mount: bad flag -z\nusage: mount [-b|-a] [-cC] srvfile old [spec]\n"
    );
    assert_eq!(shell.status(), "mount: usage");
    let (shell, _, _) = run("mount /srv/ram");
    assert_eq!(shell.status(), "mount: usage");
    let (shell, _, _) = run("mount /srv/ram /n spec extra");
    assert_eq!(shell.status(), "mount: usage");
}

#[test]
fn rfork_takes_plan9_letters() {
    let (shell, mock, _) = run("rfork n; rfork; rfork Ns");
    assert_eq!(shell.status(), "");
    assert_eq!(mock.log, ["rfork 0x1", "rfork 0x3", "rfork 0x400"]);
    let (shell, mock, _) = run("rfork f");
    assert_eq!(mock.stderr, "rfork: bad flag f\nusage: rfork [nNeEs]\n");
    assert_eq!(shell.status(), "rfork: usage");
    assert!(mock.log.is_empty());
    let (shell, mock, _) = run("rfork E");
    assert_eq!(mock.stderr, "rfork: bad arg in system call\n");
    assert_eq!(shell.status(), "rfork: bad arg in system call");
    let (shell, _, _) = run("rfork n e");
    assert_eq!(shell.status(), "rfork: usage");
}

#[test]
fn unmount() {
    let (shell, mock, _) = run("unmount /n; unmount /srv/ram /n");
    assert_eq!(shell.status(), "");
    assert_eq!(
        mock.log,
        ["unmount None /n", "unmount Some(\"/srv/ram\") /n"]
    );
    let (shell, mock, _) = run("unmount /notmounted");
    assert_eq!(mock.stderr, "unmount: /notmounted: not mounted\n");
    assert_eq!(shell.status(), "unmount: /notmounted: not mounted");
    let (shell, mock, _) = run("unmount");
    assert_eq!(mock.stderr, "usage: unmount [new] old\n");
    assert_eq!(shell.status(), "unmount: usage");
    let (shell, _, _) = run("unmount -a /n");
    assert_eq!(shell.status(), "unmount: usage");
}

#[test]
fn echo_write_errors() {
    let (shell, mock, _) = run("echo hi >[1=]");
    assert_eq!(mock.stderr, "echo: write error: fd 1 is not open\n");
    assert_eq!(shell.status(), "echo: write error: fd 1 is not open");
    let (shell, _, _) = run("echo hi >[1=0]");
    assert_eq!(
        shell.status(),
        "echo: write error: console input is not writable"
    );
}

#[test]
fn exit() {
    let (_, mock, flow) = run("echo a; exit; echo b");
    assert_eq!(flow, Flow::Exit(String::new()));
    assert_eq!(mock.stdout, "a\n");
    let (_, _, flow) = run("fail x; exit");
    assert_eq!(flow, Flow::Exit("fail: x".into()));
    let (_, _, flow) = run("exit 'bad thing'");
    assert_eq!(flow, Flow::Exit("bad thing".into()));
}

#[test]
fn syntax_errors_run_nothing() {
    let (shell, mock, flow) = run("echo a; echo 'b");
    assert_eq!(flow, Flow::Continue);
    assert_eq!(mock.stdout, "");
    assert_eq!(
        mock.stderr,
        "rc: syntax error on line 1: unterminated quote\n"
    );
    assert_eq!(
        shell.status(),
        "rc: syntax error on line 1: unterminated quote"
    );
    let (shell, mock, _) = run("echo a; & echo b");
    assert_eq!(shell.status(), "rc: syntax error on line 1: unexpected '&'");
    assert_eq!(mock.stdout, "");
}

#[test]
fn a_shell_keeps_state_between_runs() {
    let mut shell = Shell::new();
    let mut mock = Mock::new();
    shell.run(&mut mock, "x=(a b)");
    shell.run(&mut mock, "fail now");
    shell.run(&mut mock, "echo $x $status");
    assert_eq!(mock.stdout, "a b fail: now\n");
}
