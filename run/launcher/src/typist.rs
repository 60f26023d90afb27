//! Scripts typed at the guest shell's prompts (`run/up --script`).

use std::fs;
use std::path::Path;
use std::time::Duration;

/// The lines of a script for [`BootOptions::script`], every one of them
/// (blank and `#` comment lines too: rc ignores them, and the transcript
/// shows them as typed).
///
/// [`BootOptions::script`]: crate::BootOptions::script
pub fn read_script(path: &Path) -> Result<Vec<String>, String> {
    let text = fs::read_to_string(path)
        .map_err(|e| format!("cannot read the script {}: {e}", path.display()))?;
    Ok(text.lines().map(str::to_owned).collect())
}

/// rc's prompts (`$prompt`'s default words): a new command, and the rest
/// of an unfinished one.
const PROMPTS: [&str; 2] = ["; ", "\t"];

/// ^D: at an empty line, end of file for the reader of /dev/cons.
const END_OF_FILE: u8 = 0x04;

/// Types a script into the guest's shell, one line per prompt.
///
/// The shell is waiting when the console's last line is a prompt with
/// nothing after it, and that line began after the last line typed (so
/// the prompt is a new one, not the one the line was typed at). Then the
/// next line is typed with its `\n`; after the last line, ^D, so the
/// shell reads end of file and exits. The guest echoes what it reads, so
/// the transcript shows each typed line after its prompt.
///
/// A command whose output does not end its last line (`cat /dev/time`)
/// leaves the prompt after that output: a last line that merely ends with
/// `; ` counts as a prompt once the console has been quiet for
/// [`Typist::SETTLE`], so the script does not stall there.
///
/// Two script lines are not typed but direct the typing, for input to a
/// program that reads the console itself (`lx`'s Linux programs):
/// `#! after TEXT` makes the next line (or ^D) wait for TEXT in what the
/// console shows after the last keys, instead of for a prompt; `#! eof`
/// types ^D.
#[derive(Clone, Debug)]
pub struct Typist {
    lines: std::collections::VecDeque<String>,
    /// The transcript's length when the last keys were typed.
    typed_at: Option<usize>,
    /// What the next keys wait for instead of a prompt (`#! after`).
    after: Option<String>,
    done: bool,
}

/// A script line that directs the typing.
const AFTER: &str = "#! after ";
const EOF_LINE: &str = "#! eof";

impl Typist {
    pub fn new(lines: Vec<String>) -> Self {
        Typist {
            lines: lines.into(),
            typed_at: None,
            after: None,
            done: false,
        }
    }

    /// Whether everything, ^D included, has been typed.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// How long the console stays quiet before a prompt after unfinished
    /// output counts.
    pub const SETTLE: Duration = Duration::from_millis(500);

    /// Given the transcript so far (CR removed) and how long the console
    /// has been quiet, the keys to type now, if the shell waits at a new
    /// prompt.
    pub fn keys(&mut self, transcript: &str, quiet: Duration) -> Option<Vec<u8>> {
        if self.done {
            return None;
        }
        while let Some(text) = self.lines.front().and_then(|l| l.strip_prefix(AFTER)) {
            self.after = Some(text.to_owned());
            self.lines.pop_front();
        }
        let ready = match &self.after {
            Some(text) => transcript
                .get(self.typed_at.unwrap_or(0)..)
                .is_some_and(|since| since.contains(text.as_str())),
            None => {
                let start = transcript.rfind('\n').map_or(0, |n| n + 1);
                let fresh = self.typed_at.is_none_or(|at| start > at);
                let last = &transcript[start..];
                let prompt = PROMPTS.contains(&last)
                    || (last.ends_with(PROMPTS[0]) && quiet >= Self::SETTLE);
                fresh && prompt
            }
        };
        if !ready {
            return None;
        }
        self.typed_at = Some(transcript.len());
        self.after = None;
        Some(match self.lines.pop_front() {
            Some(line) if line == EOF_LINE => vec![END_OF_FILE],
            Some(line) => format!("{line}\n").into_bytes(),
            None => {
                self.done = true;
                vec![END_OF_FILE]
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typist_types_one_line_per_new_prompt_then_end_of_file() {
        let busy = Duration::ZERO;
        let mut typist = Typist::new(vec!["echo hi".into(), String::new(), "date".into()]);
        let mut transcript = String::from("core: started /bin/rc as pid 1\n");
        assert_eq!(typist.keys(&transcript, busy), None);
        transcript.push_str("; ");
        assert_eq!(
            typist.keys(&transcript, busy).as_deref(),
            Some(&b"echo hi\n"[..])
        );
        // The same prompt, before the echo: nothing more.
        assert_eq!(typist.keys(&transcript, Typist::SETTLE), None);
        transcript.push_str("echo hi\n");
        assert_eq!(typist.keys(&transcript, busy), None);
        // Output that merely contains a prompt is not one.
        transcript.push_str("hi; \n");
        assert_eq!(typist.keys(&transcript, Typist::SETTLE), None);
        transcript.push_str("; ");
        assert_eq!(typist.keys(&transcript, busy).as_deref(), Some(&b"\n"[..]));
        transcript.push_str("\n; x");
        assert_eq!(typist.keys(&transcript, Typist::SETTLE), None);
        // The continuation prompt counts too.
        transcript.push_str("\n\t");
        assert_eq!(
            typist.keys(&transcript, busy).as_deref(),
            Some(&b"date\n"[..])
        );
        // A prompt after output without a newline counts once it settles.
        transcript.push_str("date\nThu Jan  1; ");
        assert_eq!(typist.keys(&transcript, busy), None);
        let keys = typist.keys(&transcript, Typist::SETTLE);
        assert_eq!(keys.as_deref(), Some(&[END_OF_FILE][..]));
        assert!(typist.is_done());
        transcript.push_str("\n; ");
        assert_eq!(typist.keys(&transcript, busy), None);
    }

    #[test]
    fn directives_type_for_a_program_that_reads_the_console() {
        let busy = Duration::ZERO;
        let script = ["lx cat", "#! after ready", "hello", "#! eof", "date"];
        let mut typist = Typist::new(script.iter().map(|l| l.to_string()).collect());
        let mut transcript = String::from("; ");
        assert_eq!(
            typist.keys(&transcript, busy).as_deref(),
            Some(&b"lx cat\n"[..])
        );
        transcript.push_str("lx cat\n");
        // No prompt comes while the program runs: wait for its word.
        assert_eq!(typist.keys(&transcript, Typist::SETTLE), None);
        transcript.push_str("ready");
        assert_eq!(
            typist.keys(&transcript, busy).as_deref(),
            Some(&b"hello\n"[..])
        );
        // `#! eof` alone waits for a prompt, as any line does.
        transcript.push_str("\nhello\nhello\n");
        assert_eq!(typist.keys(&transcript, Typist::SETTLE), None);
        transcript.push_str("; ");
        assert_eq!(
            typist.keys(&transcript, busy).as_deref(),
            Some(&[END_OF_FILE][..])
        );
        assert!(!typist.is_done(), "a typed ^D is not the script's end");
        transcript.push_str("\n; ");
        assert_eq!(
            typist.keys(&transcript, busy).as_deref(),
            Some(&b"date\n"[..])
        );
        // Text from before the last keys does not count.
        let mut typist = Typist::new(vec!["#! after ready".into(), "x".into()]);
        typist.typed_at = Some(5);
        assert_eq!(typist.keys("ready", busy), None);
        assert_eq!(
            typist.keys("ready ready", busy).as_deref(),
            Some(&b"x\n"[..])
        );
    }

    #[test]
    fn a_missing_script_is_a_clear_error() {
        let error = read_script(Path::new("/nonexistent/script")).unwrap_err();
        assert!(error.contains("/nonexistent/script"), "{error}");
    }
}
