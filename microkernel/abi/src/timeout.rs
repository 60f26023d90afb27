//! IPC timeouts: zero, never, or relative microseconds; two per `ipc` call.
//!
//! A timeout is a 32-bit word (a simplification of L4 X.2, "TimePeriod",
//! which packs a mantissa and exponent into 16 bits): 0 is zero (do not
//! block), `u32::MAX` is never (block until a partner comes), anything else
//! is a relative period in microseconds (at most about 71 minutes). `ipc`
//! takes both of its timeouts in one register: the send timeout in bits
//! 31..0 and the receive timeout in bits 63..32.
//!
//! Invariants:
//! - Every 32-bit word decodes to a timeout and every timeout encodes to
//!   one word, so the kernel never rejects a timeout.
//! - A relative timeout starts when its phase starts: for `call`, the
//!   receive timeout runs from the moment the send phase completed.

/// How long one IPC phase may wait for its partner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timeout {
    /// Do not wait: the phase succeeds only if the partner is ready now.
    Zero,
    /// Wait as long as it takes.
    Never,
    /// Wait at most this long. 0 behaves as [`Timeout::Zero`]; `u32::MAX`
    /// encodes as `u32::MAX - 1` because `u32::MAX` means never.
    Relative {
        /// Microseconds from the start of the phase.
        microseconds: u32,
    },
}

impl Timeout {
    /// The 32-bit encoding.
    pub const fn encode(self) -> u32 {
        match self {
            Timeout::Zero => 0,
            Timeout::Never => u32::MAX,
            Timeout::Relative { microseconds } => {
                if microseconds == u32::MAX {
                    u32::MAX - 1
                } else {
                    microseconds
                }
            }
        }
    }

    /// Decodes the 32-bit encoding; total.
    pub const fn decode(word: u32) -> Timeout {
        match word {
            0 => Timeout::Zero,
            u32::MAX => Timeout::Never,
            microseconds => Timeout::Relative { microseconds },
        }
    }

    /// The deadline of a phase starting at `now` (microseconds on the
    /// kernel's clock): `Some(now)` for zero, `None` for never.
    pub const fn deadline(self, now: u64) -> Option<u64> {
        match Timeout::decode(self.encode()) {
            Timeout::Zero => Some(now),
            Timeout::Never => None,
            Timeout::Relative { microseconds } => Some(now.saturating_add(microseconds as u64)),
        }
    }

    /// Whether this timeout forbids waiting at all.
    pub const fn is_zero(self) -> bool {
        self.encode() == 0
    }
}

/// The send and receive timeouts of one `ipc` call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// Limits the send phase.
    pub send: Timeout,
    /// Limits the receive phase.
    pub receive: Timeout,
}

impl Timeouts {
    /// Both phases may wait forever: the usual `call`.
    pub const NEVER: Timeouts = Timeouts {
        send: Timeout::Never,
        receive: Timeout::Never,
    };

    /// The register word: send in bits 31..0, receive in bits 63..32.
    pub const fn encode(self) -> u64 {
        self.send.encode() as u64 | ((self.receive.encode() as u64) << 32)
    }

    /// Decodes the register word; total.
    pub const fn decode(word: u64) -> Timeouts {
        Timeouts {
            send: Timeout::decode(word as u32),
            receive: Timeout::decode((word >> 32) as u32),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(Timeout::Zero.encode(), 0);
        assert_eq!(Timeout::Never.encode(), u32::MAX);
        assert_eq!(Timeout::Relative { microseconds: 0 }.encode(), 0);
        assert_eq!(
            Timeout::Relative {
                microseconds: u32::MAX
            }
            .encode(),
            u32::MAX - 1
        );
        assert_eq!(
            Timeout::decode(250),
            Timeout::Relative { microseconds: 250 }
        );
        let pair = Timeouts {
            send: Timeout::Zero,
            receive: Timeout::Relative { microseconds: 10 },
        };
        assert_eq!(pair.encode(), 10 << 32);
        assert_eq!(Timeouts::decode(pair.encode()), pair);
        assert_eq!(Timeouts::NEVER.encode(), u64::MAX);
    }

    #[test]
    fn deadlines() {
        assert_eq!(Timeout::Zero.deadline(100), Some(100));
        assert_eq!(Timeout::Never.deadline(100), None);
        assert_eq!(
            Timeout::Relative { microseconds: 5 }.deadline(100),
            Some(105)
        );
        assert_eq!(
            Timeout::Relative { microseconds: 0 }.deadline(100),
            Some(100)
        );
        assert!(Timeout::Relative { microseconds: 0 }.is_zero());
        assert_eq!(
            Timeout::Relative { microseconds: 5 }.deadline(u64::MAX - 1),
            Some(u64::MAX)
        );
    }
}
