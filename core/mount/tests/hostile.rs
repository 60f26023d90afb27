//! A hostile server: whatever bytes come back on a link, `#M` answers its
//! callers with errors and keeps its books, and never panics.
//!
//! The link is honest for its first few exchanges (a real ramfs session, so
//! the mount and a file exist), then answers exchanges with arbitrary
//! bytes; posted reads and writes are answered by the test, also with
//! arbitrary bytes (`MountDriver::deliver`).

use kasane_mount::{attach_spec, MountDriver, Transport};
use kasane_servant::{Caller, Error, File, LinkId, Servant};
use ninep::{FileMode, OpenMode};
use ninep_server::Session;
use proptest::prelude::*;
use ramfs::{Clock, RamFs};

struct Zero;

impl Clock for Zero {
    fn now(&self) -> u32 {
        0
    }
}

struct TwoFaced {
    session: Session<RamFs<Zero>>,
    fs: RamFs<Zero>,
    honest: usize,
    garbage: Vec<Vec<u8>>,
    posting: bool,
}

impl Transport for TwoFaced {
    fn name(&self) -> &str {
        "two-faced"
    }

    fn exchange(&mut self, frame: &[u8], answer: &mut [u8]) -> Result<usize, String> {
        let bytes = if self.honest > 0 {
            self.honest -= 1;
            let mut out = Vec::new();
            self.session
                .handle(&mut self.fs, frame, &mut out)
                .map_err(|e| format!("{e:?}"))?;
            out
        } else if self.garbage.is_empty() {
            return Err("the server went quiet".into());
        } else {
            self.garbage.remove(0)
        };
        let n = bytes.len().min(answer.len());
        answer[..n].copy_from_slice(&bytes[..n]);
        Ok(n)
    }

    fn posts(&self) -> bool {
        self.posting
    }

    fn post(&mut self, _frame: &[u8], _answer: &mut [u8]) -> Result<Option<usize>, String> {
        Ok(None)
    }

    fn collect(&mut self, answer: &mut [u8]) -> Result<usize, String> {
        self.exchange(&[], answer)
    }
}

proptest! {
    /// Operations on a link that turns to garbage end in errors or waits,
    /// never a panic; once the link is reported dead, everything on it
    /// answers "i/o on hungup channel".
    #[test]
    fn garbage_answers_never_panic(
        garbage in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..8),
        posting in any::<bool>(),
        delivered in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 0..6),
    ) {
        let mut m = MountDriver::new();
        let link = TwoFaced {
            session: Session::new(kasane_mount::MSIZE),
            fs: RamFs::new(Zero, "eve", "eve", 0o775),
            honest: 4, // version, attach, and the walk and create below
            garbage,
            posting,
        };
        m.add_link(LinkId(1), link);
        let c = Caller::new(1, "eve");
        let root = m.attach(&c, &attach_spec(LinkId(1), "")).expect("an honest attach");
        let file: File = m
            .create(&c, &root, "f", FileMode::from_bits_retain(0o644), OpenMode::ORDWR)
            .expect("an honest create");
        // From here on the server lies.
        let _ = m.read(&c, &file, 0, 64);
        let _ = m.write(&c, &file, 0, b"data");
        for bytes in &delivered {
            m.deliver(LinkId(1), bytes);
        }
        let _ = m.walk(&c, &root, "x");
        let _ = m.stat(&c, &file);
        let _ = m.read_dir(&c, &root);
        m.expire(0, 1);
        m.expire(10, 1);
        let _ = m.take_wakeups();
        if !m.take_dead().is_empty() {
            prop_assert_eq!(m.read(&c, &file, 8, 8), Err(Error::HUNGUP));
            prop_assert_eq!(m.walk(&c, &root, "f"), Err(Error::HUNGUP));
            prop_assert!(m.write(&c, &file, 8, b"more") == Err(Error::HUNGUP));
        }
        m.close(&file, Some(OpenMode::ORDWR));
        m.close(&root, None);
        m.forget(1);
    }
}
