//! The commands cell 0 sends a server VM through hvm (`TakeCommand`).
//!
//! Each is a failure the VM performs for real (contract 8 of issue 12):
//! - `crash`: the server panics; the runtime's panic handler reports it
//!   with `FaultReport`;
//! - `triple-fault`: an empty IDT, then an exception: a real triple fault
//!   that hvm sees as its exit;
//! - `wild-write`: a store to a guest-physical address beyond the cell's
//!   memory: hvm sees the EPT violation;
//! - `hang`: interrupts off and a loop for ever: only hvm's heartbeat
//!   watchdog notices;
//! - `garbage`: bytes that are not 9P written on the link, for cell 0's
//!   protocol check.

use hvm_abi::CellControl;

/// A failure to perform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Crash,
    TripleFault,
    WildWrite,
    Hang,
    Garbage,
}

impl Verb {
    /// The verb `TakeCommand` returned (0 and other ops are none).
    pub fn from_command(raw: u64) -> Option<Self> {
        Some(match CellControl::from_raw(raw)? {
            CellControl::Crash => Self::Crash,
            CellControl::TripleFault => Self::TripleFault,
            CellControl::WildWrite => Self::WildWrite,
            CellControl::Hang => Self::Hang,
            CellControl::Garbage => Self::Garbage,
            CellControl::Start | CellControl::Stop | CellControl::Restart => return None,
        })
    }

    /// Its name in `/dev/vm/N/ctl`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Crash => "crash",
            Self::TripleFault => "triple-fault",
            Self::WildWrite => "wild-write",
            Self::Hang => "hang",
            Self::Garbage => "garbage",
        }
    }
}

/// What `garbage` writes: no 9P size field can start like this (it claims
/// a frame of nearly 4 GiB).
pub const GARBAGE: &[u8] = b"\xff\xff\xff\xffthis is not 9P\n";

/// Where `wild-write` stores: beyond any cell's memory, inside the 2 MiB
/// page around the link BAR that the cell has mapped (hvm maps it), but
/// past the BAR itself, so the access reaches no device.
pub const WILD_ADDRESS: u64 = 0xE01F_F000;

// Past the link BAR (32 KiB), inside its 2 MiB page.
const _: () = assert!(WILD_ADDRESS >= 0xE000_8000 && WILD_ADDRESS < 0xE020_0000);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_map_to_verbs_and_nothing_else() {
        assert_eq!(Verb::from_command(0), None);
        assert_eq!(Verb::from_command(3), None, "restart is hvm's, not a verb");
        let verbs: std::vec::Vec<_> = (10..=14).filter_map(Verb::from_command).collect();
        assert_eq!(
            verbs,
            [
                Verb::Crash,
                Verb::TripleFault,
                Verb::WildWrite,
                Verb::Hang,
                Verb::Garbage
            ]
        );
        assert_eq!(Verb::from_command(15), None);
        assert_eq!(Verb::TripleFault.name(), "triple-fault");
        let size = u32::from_le_bytes(GARBAGE[..4].try_into().unwrap());
        assert!(size as usize > 1 << 20, "garbage never frames as 9P");
    }
}
