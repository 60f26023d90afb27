//! rc(1)'s language beyond simple commands, against the mock host.

mod mock;

use kasane_rc::{Flow, Shell};
use mock::{run, Mock};

/// Runs `source` and returns what fd 1 got; asserts no fd leaked.
fn out(source: &str) -> String {
    let (_, mock, _) = run(source);
    assert!(mock.no_leaks(), "fds leaked by {source:?}");
    mock.stdout
}

/// Runs `source` and returns `$status` and what fd 2 got.
fn err(source: &str) -> (String, String) {
    let (shell, mock, _) = run(source);
    assert!(mock.no_leaks(), "fds leaked by {source:?}");
    (shell.status(), mock.stderr)
}

#[test]
fn lists_counts_and_subscripts() {
    assert_eq!(
        out("x=(a b c d)\necho $#x $x(2) / $x(2-) / $x(2-3) / $x(3 1) / $x(9) $#x"),
        "4 b / b c d / b c / c a / 4\n"
    );
    // A subscripted variable still concatenates.
    assert_eq!(
        out("x=(a b c); echo $x(2)^.c pre$x(1-2)"),
        "b.c prea preb\n"
    );
    // `$x (2)` with a blank is the variable and then a list.
    assert_eq!(out("x=(a b); echo $x (2)"), "a b 2\n");
    let (status, stderr) = err("x=(a b); echo $x(z)");
    assert_eq!(status, "rc: bad subscript 'z'");
    assert_eq!(stderr, "rc: bad subscript 'z'\n");
    assert_eq!(err("x=(a b); echo $x(0)").0, "rc: bad subscript '0'");
}

#[test]
fn joined_variables_and_carets() {
    assert_eq!(out("x=(a b c); args $\"x $\"nothing"), "[a b c][]\n");
    assert_eq!(out("x=(a b c); echo $#x $\"x^.c"), "3 a b c.c\n");
    // Distributive and pairwise concatenation.
    assert_eq!(
        out("echo (a b)^(1 2) x^(1 2 3) (a b)^-^(c d)"),
        "a1 b2 x1 x2 x3 a-c b-d\n"
    );
    assert_eq!(
        err("echo (a b)^(1 2 3)").0,
        "rc: mismatched list lengths in concatenation"
    );
}

#[test]
fn positional_parameters() {
    let mut shell = Shell::new();
    let mut mock = Mock::new();
    shell.set_var("*", vec!["one".into(), "two".into(), "three".into()]);
    shell.set_var("0", vec!["script".into()]);
    shell.run(
        &mut mock,
        "echo $0 $#* $1 $3 $4 $*(2-)\nshift\necho $1 $*\nshift 2\necho $#*",
    );
    assert_eq!(
        mock.stdout,
        "script 3 one three two three\ntwo two three\n0\n"
    );
    shell.run(&mut mock, "shift");
    assert_eq!(mock.stderr, "shift: nothing to shift\n");
    assert_eq!(shell.status(), "shift: nothing to shift");
    shell.run(&mut mock, "shift x");
    assert_eq!(shell.status(), "shift: usage");
}

#[test]
fn local_assignment_before_a_compound_command() {
    assert_eq!(
        out("x=global\nx=local { echo $x }\necho $x\nfn f { echo $x }\nx=inner f"),
        "local\nglobal\ninner\n"
    );
}

#[test]
fn if_and_if_not() {
    let source = "x=hello\nif(~ $x hello) echo yes\nif not echo no\n\
                  if(~ $x bye) echo yes\nif not echo no";
    assert_eq!(out(source), "yes\nno\n");
    assert_eq!(out("if(fail) echo a\nif not { echo b; echo c }"), "b\nc\n");
    let (status, _) = err("if(fail x) echo a");
    assert_eq!(status, "fail: x");
}

#[test]
fn for_loops() {
    assert_eq!(
        out("for(i in a b c) echo -n $i.\necho\nl=(x y)\nfor(i in $l 1) { echo $i }"),
        "a.b.c.\nx\ny\n1\n"
    );
    let mut shell = Shell::new();
    let mut mock = Mock::new();
    shell.set_var("*", vec!["p".into(), "q".into()]);
    shell.run(&mut mock, "for(a) echo $a; echo last $a");
    assert_eq!(mock.stdout, "p\nq\nlast q\n");
    assert_eq!(out("for(i in) echo never; echo end"), "end\n");
}

#[test]
fn while_loops() {
    assert_eq!(
        out("l=(a b c)\nwhile(! ~ $#l 0) { echo $l(1); l=$l(2-) }\necho done"),
        "a\nb\nc\ndone\n"
    );
}

#[test]
fn switch_and_case() {
    let source = "fn s {\n switch($1){\n case a*\n  echo starts with a\n case b c\n  \
                  echo b or c\n case *\n  echo other\n }\n}\ns apple; s c; s zed; s b";
    assert_eq!(out(source), "starts with a\nb or c\nother\nb or c\n");
    // No case matches: nothing runs.
    assert_eq!(out("switch(x){case y\necho y\n}\necho end"), "end\n");
}

#[test]
fn blocks_with_redirections() {
    let (_, mock, _) = run("{ echo a; echo b } >/f; { cat; echo c } </f >>/f");
    assert_eq!(mock.files["/f"], b"a\nb\na\nb\nc\n");
    assert!(mock.no_leaks());
    let (_, mock, _) = run("{ fail x; echo y } >/o >[2=1]");
    assert_eq!(mock.files["/o"], b"fail: x\ny\n");
    assert_eq!(mock.stderr, "");
    let (status, _) = err("{ echo a } >/forbidden/f");
    assert_eq!(status, "rc: can't open /forbidden/f: permission denied");
    // A block in a pipeline.
    assert_eq!(
        out("{ echo a; echo b } | wc; echo x | { cat; echo y }"),
        "2 4\nx\ny\n"
    );
}

#[test]
fn and_or_not() {
    assert_eq!(
        out("fail x && echo no; args a && echo yes; fail y || echo or; args b || echo no"),
        "[a]\nyes\nor\n[b]\n"
    );
    let (shell, _, _) = run("! fail x");
    assert_eq!(shell.status(), "");
    let (shell, _, _) = run("! echo x");
    assert_eq!(shell.status(), "false");
    assert!(!shell.succeeded());
    assert_eq!(out("! ~ a b && echo differ"), "differ\n");
}

#[test]
fn matching() {
    let cases = [
        ("~ abc a*", true),
        ("~ abc '*'", false),
        ("~ '*' '*'", true),
        ("~ abc a?c", true),
        ("~ abc a?", false),
        ("~ abc [a-c]bc", true),
        ("~ xbc [~a-c]bc", true),
        ("~ abc [~a-c]bc", false),
        ("~ abc x y *c", true),
        // The subject's elements are joined by spaces (Plan 9's rc).
        ("~ (x abc) a*", false),
        ("~ (x abc) 'x abc'", true),
        ("~ (x abc) x*", true),
        ("~ () ''", true),
        ("~ () *", true),
        ("p='*'; ~ abc $p", false),
        ("~ a[ a[", true),
        ("~ '' ''", true),
        ("~ a\\b a\\b", true),
    ];
    for (source, matched) in cases {
        let (shell, _, _) = run(source);
        let want = if matched { "" } else { "no match" };
        assert_eq!(shell.status(), want, "{source}");
    }
}

#[test]
fn functions() {
    assert_eq!(
        out("fn greet { echo hello $1; echo $#* }\ngreet world x\ngreet"),
        "hello world\n2\nhello\n0\n"
    );
    // $0 is the script's, in a function too (as Plan 9's rc has it).
    let mut shell = Shell::new();
    let mut mock = Mock::new();
    shell.set_var("0", vec!["script".into()]);
    shell.run(&mut mock, "fn f { echo $0 }; f");
    assert_eq!(mock.stdout, "script\n");
    // $* is restored after the call.
    let mut shell = Shell::new();
    let mut mock = Mock::new();
    shell.set_var("*", vec!["outer".into()]);
    shell.run(&mut mock, "fn f { echo $* }; f inner; echo $*");
    assert_eq!(mock.stdout, "inner\nouter\n");
    // Functions come before builtins and programs; `fn name` deletes.
    assert_eq!(
        out("fn cat { echo not cat }; cat; fn cat; echo x | cat"),
        "not cat\nx\n"
    );
    // Redirections and pipes apply to the function's body.
    let (_, mock, _) = run("fn two { echo a; echo b }; two >/f; two | wc");
    assert_eq!(mock.files["/f"], b"a\nb\n");
    assert_eq!(mock.stdout, "2 4\n");
    // `exit` in a function ends the shell.
    let (_, mock, flow) = run("fn bye { exit gone }; bye; echo never");
    assert_eq!(flow, Flow::Exit("gone".into()));
    assert_eq!(mock.stdout, "");
    // Endless recursion is stopped.
    let (status, stderr) = err("fn f { f }; f");
    assert_eq!(status, "rc: too deep: functions, eval or . nested 32 times");
    assert_eq!(stderr.lines().count(), 1);
}

#[test]
fn command_substitution() {
    let (_, mock, _) = {
        let mut shell = Shell::new();
        let mut mock = Mock::new();
        mock.files.insert("/f".into(), b"one two\nthree\n".to_vec());
        let flow = shell.run(
            &mut mock,
            "x=`{cat /f}; echo $#x $x(3); echo `{echo a b}^.c",
        );
        (shell, mock, flow)
    };
    assert_eq!(mock.stdout, "3 three\na.c b.c\n");
    assert!(mock.no_leaks());
    assert_eq!(
        out("ifs=:\necho -n `{echo -n a:b c:d} | wc\nargs `{echo -n x:y}"),
        "0 7\n[x][y]\n"
    );
    assert_eq!(out("echo `{} x"), "x\n");
    // A failed pipe is an error of the word.
    let mut shell = Shell::new();
    let mut mock = Mock::new();
    mock.fail_pipe = true;
    shell.run(&mut mock, "echo `{echo a}");
    assert_eq!(shell.status(), "rc: can't make a pipe: no more pipes");
    assert_eq!(mock.stdout, "");
}

#[test]
fn builtins_eval_dot_whatis() {
    assert_eq!(out("x='echo hi'; eval $x; eval 'y=3'; echo $y"), "hi\n3\n");
    let mut shell = Shell::new();
    let mut mock = Mock::new();
    mock.files
        .insert("/s".into(), b"echo in script $1 $#*\nz=set\n".to_vec());
    shell.run(&mut mock, ". /s a b; echo $z $#*");
    assert_eq!(mock.stdout, "in script a 2\nset 0\n");
    shell.run(&mut mock, ". /missing");
    assert_eq!(
        shell.status(),
        ".: can't open /missing: '/missing' file does not exist"
    );
    shell.run(&mut mock, ".");
    assert_eq!(shell.status(), ".: usage");
    let mut shell = Shell::new();
    let mut mock = Mock::new();
    mock.files.insert("/bin/args".into(), vec![]);
    shell.run(
        &mut mock,
        "x=(a 'b c'); y=1; fn f { echo f }\nwhatis x y f cd args\nwhatis nosuch",
    );
    assert_eq!(
        mock.stdout,
        "x=(a 'b c')\ny=1\nfn f { echo f }\nbuiltin cd\n/bin/args\n"
    );
    assert_eq!(mock.stderr, "nosuch: not found\n");
    assert_eq!(shell.status(), "nosuch: not found");
    assert!(mock.no_leaks());
}

#[test]
fn syntax_errors_name_the_construct_and_line() {
    let cases = [
        (
            "echo a\nif x",
            "syntax error on line 2: 'if' needs a condition in '(...)', not 'x'",
        ),
        (
            "for(i in a b",
            "syntax error on line 1: 'for' needs '(name in list)' or '(name)'",
        ),
        (
            "\n\nwhile(a) }",
            "syntax error on line 3: 'while' needs a command, not '}'",
        ),
        (
            "switch(a) echo",
            "syntax error on line 1: 'switch' needs a body in '{...}', not 'echo'",
        ),
        (
            "{ echo a",
            "syntax error on line 1: '{' from line 1 has no closing '}'",
        ),
        (
            "a &&",
            "syntax error on line 1: '&&' needs a command after it",
        ),
        ("fn", "syntax error on line 1: 'fn' needs a name"),
        ("~", "syntax error on line 1: '~' needs a subject"),
    ];
    for (source, message) in cases {
        let (shell, mock, _) = run(source);
        assert_eq!(shell.status(), format!("rc: {message}"), "{source:?}");
        assert_eq!(mock.stdout, "", "{source:?}");
    }
}

#[test]
fn background_jobs_and_wait() {
    let mut shell = Shell::new();
    let mut mock = Mock::new();
    shell.run(&mut mock, "args a & echo started $apid; fail late &");
    assert_eq!(mock.stdout, "started 101\n");
    assert_eq!(shell.status(), "");
    assert_eq!(mock.jobs.len(), 2);
    // `wait pid` waits for that one; `wait` for the rest.
    shell.run(&mut mock, "wait $apid; echo $status");
    assert_eq!(mock.stdout, "started 101\nfail: late\n");
    shell.run(&mut mock, "wait; echo status $status");
    assert_eq!(mock.stdout, "started 101\nfail: late\n[a]\nstatus \n");
    assert!(mock.jobs.is_empty());
    shell.run(&mut mock, "wait 7");
    assert_eq!(shell.status(), "wait: 7: no such child process");
    shell.run(&mut mock, "wait x");
    assert_eq!(shell.status(), "wait: usage");
    // No fork: builtins, functions and blocks cannot go to the background.
    let (status, _) = err("echo a &");
    assert_eq!(status, "rc: only a program can run in the background");
    let (status, _) = err("{ args a } &");
    assert_eq!(status, "rc: only a program can run in the background");
    let (status, _) = err("nosuch &");
    assert_eq!(status, "nosuch: file does not exist");
}

#[test]
fn here_documents() {
    assert_eq!(
        out("x=(a b)\ncat <<EOF; echo after\nline $x\n  $nothing. $ $#x\nEOF\necho next"),
        "line a b\n  . $ $#x\nafter\nnext\n"
    );
    // A quoted tag keeps the text as it is; [n] picks the fd.
    assert_eq!(out("cat <<'END' | wc\n$x\nEND"), "1 3\n");
    assert_eq!(out("x=1; cat <<'END'\n$x\nEND"), "$x\n");
    let (_, mock, _) = run("fail x <<[2]E >[2]/e\nignored\nE");
    assert_eq!(mock.files["/e"], b"fail: x\n");
    let (status, _) = err("cat <<EOF\nno end\n");
    assert_eq!(
        status,
        "rc: syntax error on line 3: here document has no line 'EOF'"
    );
    assert_eq!(
        err("cat <<").0,
        "rc: syntax error on line 1: '<<' needs a tag word"
    );
    let mut shell = Shell::new();
    let mut mock = Mock::new();
    mock.fail_pipe = true;
    shell.run(&mut mock, "cat <<E\nx\nE");
    assert_eq!(shell.status(), "rc: can't make a pipe: no more pipes");
    assert!(mock.no_leaks());
}

#[test]
fn globbing_against_the_namespace() {
    let mut shell = Shell::new();
    let mut mock = Mock::new();
    for file in [
        "/t/b.rc",
        "/t/a.rc",
        "/t/c.txt",
        "/t/d/x.rc",
        "/t/e/y.rc",
        "/u/z.rc",
    ] {
        mock.files.insert(file.into(), vec![]);
    }
    let run = |shell: &mut Shell, mock: &mut Mock, source: &str| {
        mock.stdout.clear();
        shell.run(mock, source);
        mock.stdout.clone()
    };
    // Matches come sorted, whatever the server's order.
    assert_eq!(
        run(&mut shell, &mut mock, "echo /t/*.rc"),
        "/t/a.rc /t/b.rc\n"
    );
    assert_eq!(
        run(&mut shell, &mut mock, "echo /t/?.* /t/[c-d]*"),
        "/t/a.rc /t/b.rc /t/c.txt /t/c.txt /t/d\n"
    );
    // A pattern in a directory element matches directories only.
    assert_eq!(
        run(&mut shell, &mut mock, "echo /*/*/*.rc"),
        "/t/d/x.rc /t/e/y.rc\n"
    );
    // Relative to the current directory.
    assert_eq!(
        run(&mut shell, &mut mock, "cd /t; echo *.txt; cd /"),
        "c.txt\n"
    );
    // No match, quoted, or from a variable: the text itself.
    assert_eq!(
        run(&mut shell, &mut mock, "p='/t/*'; echo /t/*.none '/t/*' $p"),
        "/t/*.none /t/* /t/*\n"
    );
    // `for` lists are globbed too.
    assert_eq!(
        run(&mut shell, &mut mock, "for(f in /u/*) echo $f"),
        "/u/z.rc\n"
    );
    assert!(mock.no_leaks());
}

#[test]
fn test_builtin() {
    let mut shell = Shell::new();
    let mut mock = Mock::new();
    mock.files.insert("/d/f".into(), b"x".to_vec());
    mock.files.insert("/d/empty".into(), vec![]);
    let cases = [
        ("test -f /d/f", true),
        ("test -f /d", false),
        ("test -d /d", true),
        ("test -d /d/f", false),
        ("test -e /nothing", false),
        ("test -s /d/f", true),
        ("test -s /d/empty", false),
        ("test -r /d/f", true),
        ("test ! -e /nothing", true),
        ("test a = a", true),
        ("test a != a", false),
        ("test 3 -lt 10", true),
        ("test 3 -ge 10", false),
        ("test -n ''", false),
        ("test -z ''", true),
        ("test word", true),
        ("test", false),
        ("test -f /d/f -a -d /d", true),
        ("test -f /d -o -d /d", true),
        ("test -f /d -a -d /d -o a = b", false),
    ];
    for (source, want) in cases {
        shell.run(&mut mock, source);
        assert_eq!(shell.succeeded(), want, "{source}");
    }
    shell.run(&mut mock, "if(test -f /d/f) echo file\nif not echo none");
    assert_eq!(mock.stdout, "file\n");
    shell.run(&mut mock, "test x -eq 1");
    assert_eq!(shell.status(), "test: bad number 'x'");
    shell.run(&mut mock, "test a b c d");
    assert_eq!(shell.status(), "test: syntax error at 'a b c d'");
    assert_eq!(
        mock.stderr,
        "test: bad number 'x'\ntest: syntax error at 'a b c d'\n"
    );
}
