//! The same scripts under Plan 9's rc (9base) and Kasane's: same output.
//!
//! Debian's `9base` package ships Duff's rc as `/usr/lib/plan9/bin/rc`.
//! Each script runs there as a file, and under a [`Shell`] on the mock
//! host with the same `$0`; their standard outputs must be equal. The
//! scripts use only the language, `echo` and `cat`, which both sides
//! have. Without 9base the test says so and checks nothing else, except
//! under run/test, which installs it: there it fails.

mod mock;

use std::path::Path;
use std::process::Command;

use kasane_rc::Shell;
use mock::Mock;

const PLAN9_RC: &str = "/usr/lib/plan9/bin/rc";

const SCRIPTS: &[&str] = &[
    // Lists, subscripts, $#, $", carets.
    "x=(a b c d)\necho $#x $x(2) $x(2-) $x(2-3) $x(4 1) $\"x\n\
     echo (a b)^(1 2) x^(1 2 3) $x(1)^.c\necho $#nothing $nothing end\n",
    // Local assignments, if / if not, ~ with patterns.
    "x=(a b)\nx=1 { echo local $x }\necho global $x\n\
     if(~ $x(1) a) echo yes\nif not echo no\nif(~ $x(1) z) echo yes\nif not echo no\n\
     ~ hello h*o && echo star\n~ hello '*' || echo quoted\n~ b [a-c] && echo class\n\
     ~ b [~a-c] || echo negated\n~ ab a? && echo question\n! ~ a b && echo bang\n",
    // Loops and switch.
    "for(i in 1 2 3) echo -n $i.\necho\nfor(i) echo never\n\
     n=(1 1 1)\nwhile(! ~ $#n 0) n=$n(2-)\necho while $#n\n\
     fn s {\n\tswitch($1){\n\tcase a*\n\t\techo a-word\n\tcase b c\n\t\techo b-or-c\n\
     \tcase *\n\t\techo other\n\t}\n}\ns apple; s c; s zed\n",
    // Functions, $*, substitution, ifs, eval, blocks, here documents.
    "fn f { echo in f $#* $* $2 }\nf 1 2 3; f\nfn f\n\
     lines=`{echo one two; echo three}\necho $#lines $lines(3)\n\
     ifs=:\nparts=`{echo -n a:b:c}\necho $#parts\nifs=' \t\n'\n\
     x=(p q r)\neval echo evaluated '$x(3)'\n{ echo in; echo block } | cat\n\
     cat <<EOF\nhere $x doc\nEOF\ncat <<'EOF'\nquoted $x\nEOF\necho done\n",
    // Empty lists, status words, && and || chains, nested blocks.
    "x=()\necho $#x $x(1) end\nfor(i in $x) echo never\n~ $x '' || echo empty-no-match\n\
     y=''\n~ $y '' && echo empty-string\necho $#y\n\
     ~ a b; echo $status\n! ~ a a; echo $status\n\
     ~ a a && ~ b c || echo chain\n{ { echo nested } }\n\
     if(~ a a) { echo one; echo two }\nz=(1 2 3); echo $z(2)^$z(3) $\"z^-\n\
     switch(none){\ncase x\n\techo x\n}\necho after switch\n\
     ~ (x abc) a* || echo joined-subject\n~ (x abc) 'x abc' && echo joined\n\
     switch((b c)){\ncase b\n\techo b\ncase 'b c'\n\techo b-c\n}\n",
    // Positional parameters, shift, $"x of nothing, subscripts past the end.
    "fn p { echo $#* $1 $3 $*(2-); shift; echo $1 $#*; shift 2; echo $#* }\np a b c\n\
     e=()\necho [$\"e] $#e\nl=(a b)\necho $l(5) $l(2-9) $l(1-1) end\n\
     for(w in a b) for(v in 1 2) echo -n $w$v' '\necho\n\
     if(~ a b) echo no\nif not if(~ c c) echo inner\n",
    // Pipes into and out of blocks and functions, eval with quotes.
    "echo x | { cat; echo y }\nfn two { echo a; echo b }\ntwo | cat\n\
     eval 'q=(1 2 3)'; echo $#q\necho $#* $* end\n\
     a=1 b=2 { echo $a$b }\necho `{echo sub}^-suffix pre-^`{echo a b}\n",
];

#[test]
fn scripts_print_what_plan9_rc_prints() {
    if !Path::new(PLAN9_RC).exists() {
        // run/test installs 9base (run/deps) and sets KASANE_ROOT: there a
        // missing peer is a failure, not a pass that compared nothing.
        assert!(
            std::env::var_os("KASANE_ROOT").is_none(),
            "{PLAN9_RC} is missing: run/deps installs Debian's 9base"
        );
        eprintln!("{PLAN9_RC} is missing (Debian's 9base): nothing compared");
        return;
    }
    let dir = std::env::temp_dir().join(format!("kasane-rc-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, script) in SCRIPTS.iter().enumerate() {
        let path = dir.join(format!("script{i}.rc"));
        std::fs::write(&path, script).unwrap();
        let plan9 = Command::new(PLAN9_RC)
            .arg(&path)
            .env("PLAN9", "/usr/lib/plan9")
            .output()
            .expect("run Plan 9's rc");
        let plan9 = String::from_utf8_lossy(&plan9.stdout).into_owned();
        let mut shell = Shell::new();
        let mut mock = Mock::new();
        shell.set_var("0", vec![path.display().to_string()]);
        shell.run(&mut mock, script);
        assert_eq!(
            mock.stdout, plan9,
            "script {i}:\n{script}\nstderr: {}",
            mock.stderr
        );
        assert!(!plan9.is_empty(), "script {i} printed nothing");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
