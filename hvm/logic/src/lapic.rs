//! A local APIC in x2APIC mode for a Linux cell: timer, EOI, self-IPI.
//!
//! The cell has one vCPU and no IOAPIC; interrupts come from its own timer,
//! from self-IPIs (`irq_work`) and from MSI-X messages of its virtio device.
//! The register set is the x2APIC MSR interface (SDM Vol. 3 11.12.1.2,
//! "x2APIC Register Address Space"), accessed with RDMSR/WRMSR, so no MMIO
//! page is needed. Priorities follow SDM 11.8.3 (PPR from TPR and the
//! highest in-service vector; a vector is delivered when its class is above
//! PPR's) and the timer SDM 11.5.4 (one-shot, periodic, TSC-deadline). The
//! timer counts in TSC ticks divided by the divide configuration: the cell is
//! told (CPUID 0x15) that the crystal and the TSC run at one frequency.

/// IA32_APIC_BASE.
pub const MSR_APIC_BASE: u32 = 0x1B;
/// IA32_TSC_DEADLINE.
pub const MSR_TSC_DEADLINE: u32 = 0x6E0;
/// First and last x2APIC register MSRs.
pub const X2APIC_FIRST: u32 = 0x800;
pub const X2APIC_LAST: u32 = 0x8FF;

/// APIC base: 0xFEE00000, BSP (8), x2APIC enabled (10), APIC enabled (11).
const APIC_BASE_VALUE: u64 = 0xFEE0_0000 | (1 << 8) | (1 << 10) | (1 << 11);

mod register {
    pub const ID: u32 = 0x802;
    pub const VERSION: u32 = 0x803;
    pub const TPR: u32 = 0x808;
    pub const PPR: u32 = 0x80A;
    pub const EOI: u32 = 0x80B;
    pub const LDR: u32 = 0x80D;
    pub const SVR: u32 = 0x80F;
    pub const ISR0: u32 = 0x810;
    pub const ISR7: u32 = 0x817;
    pub const TMR0: u32 = 0x818;
    pub const TMR7: u32 = 0x81F;
    pub const IRR0: u32 = 0x820;
    pub const IRR7: u32 = 0x827;
    pub const ESR: u32 = 0x828;
    pub const LVT_CMCI: u32 = 0x82F;
    pub const ICR: u32 = 0x830;
    pub const LVT_TIMER: u32 = 0x832;
    pub const LVT_THERMAL: u32 = 0x833;
    pub const LVT_PMC: u32 = 0x834;
    pub const LVT_LINT0: u32 = 0x835;
    pub const LVT_LINT1: u32 = 0x836;
    pub const LVT_ERROR: u32 = 0x837;
    pub const INITIAL_COUNT: u32 = 0x838;
    pub const CURRENT_COUNT: u32 = 0x839;
    pub const DIVIDE: u32 = 0x83E;
    pub const SELF_IPI: u32 = 0x83F;
}

const MASKED: u32 = 1 << 16;

/// A 256-bit vector set (IRR, ISR).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Vectors([u32; 8]);

impl Vectors {
    fn set(&mut self, vector: u8) {
        self.0[usize::from(vector / 32)] |= 1 << (vector % 32);
    }
    fn clear(&mut self, vector: u8) {
        self.0[usize::from(vector / 32)] &= !(1 << (vector % 32));
    }
    fn highest(&self) -> Option<u8> {
        (0..8).rev().find_map(|word| {
            let bits = self.0[word];
            (bits != 0).then(|| (word * 32 + 31 - bits.leading_zeros() as usize) as u8)
        })
    }
}

/// Timer mode, LVT timer bits 18:17.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TimerMode {
    OneShot,
    Periodic,
    TscDeadline,
}

/// The local APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lapic {
    irr: Vectors,
    isr: Vectors,
    tpr: u32,
    svr: u32,
    esr: u32,
    icr: u64,
    lvt_timer: u32,
    lvt_other: [u32; 6],
    divide: u32,
    initial_count: u32,
    /// TSC when the count was loaded (one-shot/periodic).
    count_start: u64,
    /// Next expiry in TSC ticks, when armed.
    expiry: Option<u64>,
    tsc_deadline: u64,
}

impl Default for Lapic {
    fn default() -> Self {
        Self::new()
    }
}

/// The MSRs this model answers.
pub fn handles(msr: u32) -> bool {
    matches!(
        msr,
        MSR_APIC_BASE | MSR_TSC_DEADLINE | X2APIC_FIRST..=X2APIC_LAST
    )
}

impl Lapic {
    /// The state after reset (SDM 11.4.7.1): LVTs masked, SVR 0xFF.
    pub fn new() -> Self {
        Self {
            irr: Vectors::default(),
            isr: Vectors::default(),
            tpr: 0,
            svr: 0xFF,
            esr: 0,
            icr: 0,
            lvt_timer: MASKED,
            lvt_other: [MASKED; 6],
            divide: 0,
            initial_count: 0,
            count_start: 0,
            expiry: None,
            tsc_deadline: 0,
        }
    }

    fn timer_mode(&self) -> TimerMode {
        match (self.lvt_timer >> 17) & 3 {
            1 => TimerMode::Periodic,
            2 => TimerMode::TscDeadline,
            _ => TimerMode::OneShot,
        }
    }

    /// Divide configuration (SDM Figure 11-10) as a shift.
    fn divide_shift(&self) -> u32 {
        let code = (self.divide & 3) | ((self.divide >> 1) & 4);
        if code == 7 {
            0
        } else {
            code + 1
        }
    }

    fn ppr(&self) -> u32 {
        let isr_class = self.isr.highest().map_or(0, |v| u32::from(v) & 0xF0);
        if (self.tpr & 0xF0) >= isr_class {
            self.tpr & 0xFF
        } else {
            isr_class
        }
    }

    fn lvt_index(msr: u32) -> Option<usize> {
        use register::*;
        Some(match msr {
            LVT_CMCI => 0,
            LVT_THERMAL => 1,
            LVT_PMC => 2,
            LVT_LINT0 => 3,
            LVT_LINT1 => 4,
            LVT_ERROR => 5,
            _ => return None,
        })
    }

    /// RDMSR; `None` means #GP (write-only or reserved register).
    pub fn read(&self, msr: u32, now: u64) -> Option<u64> {
        use register::*;
        let value = match msr {
            MSR_APIC_BASE => APIC_BASE_VALUE,
            MSR_TSC_DEADLINE => {
                if self.timer_mode() == TimerMode::TscDeadline {
                    self.tsc_deadline
                } else {
                    0
                }
            }
            ID => 0,
            // Version 0x14, six LVT entries (max LVT index 5).
            VERSION => 0x0005_0014,
            TPR => u64::from(self.tpr),
            PPR => u64::from(self.ppr()),
            // x2APIC logical ID (SDM 11.12.10.2): cluster 0, bit 0 for ID 0.
            LDR => 1,
            SVR => u64::from(self.svr),
            ISR0..=ISR7 => u64::from(self.isr.0[(msr - ISR0) as usize]),
            TMR0..=TMR7 => 0,
            IRR0..=IRR7 => u64::from(self.irr.0[(msr - IRR0) as usize]),
            ESR => u64::from(self.esr),
            ICR => self.icr,
            LVT_TIMER => u64::from(self.lvt_timer),
            INITIAL_COUNT => u64::from(self.initial_count),
            CURRENT_COUNT => u64::from(self.current_count(now)),
            DIVIDE => u64::from(self.divide),
            _ => u64::from(*self.lvt_other.get(Self::lvt_index(msr)?)?),
        };
        Some(value)
    }

    fn current_count(&self, now: u64) -> u32 {
        if self.timer_mode() == TimerMode::TscDeadline || self.expiry.is_none() {
            return 0;
        }
        let elapsed = now.saturating_sub(self.count_start) >> self.divide_shift();
        let initial = u64::from(self.initial_count);
        match self.timer_mode() {
            TimerMode::Periodic if initial > 0 => (initial - elapsed % initial) as u32,
            _ => initial.saturating_sub(elapsed) as u32,
        }
    }

    /// WRMSR; `Err(())` means #GP.
    #[allow(clippy::result_unit_err)]
    pub fn write(&mut self, msr: u32, value: u64, now: u64) -> Result<(), ()> {
        use register::*;
        let low = value as u32;
        // SDM 11.12.1.2: bits 63:32 of most registers are reserved.
        if !matches!(msr, ICR | MSR_TSC_DEADLINE | MSR_APIC_BASE) && value >> 32 != 0 {
            return Err(());
        }
        match msr {
            MSR_APIC_BASE => {
                // Leaving x2APIC mode is not offered: the cell keeps it.
                if value & !(0xFFF) != 0xFEE0_0000 || value & (1 << 10) == 0 {
                    return Err(());
                }
            }
            MSR_TSC_DEADLINE => {
                if self.timer_mode() == TimerMode::TscDeadline {
                    self.tsc_deadline = value;
                    self.expiry = (value != 0).then_some(value);
                }
            }
            TPR => self.tpr = low & 0xFF,
            EOI => {
                if value != 0 {
                    return Err(());
                }
                if let Some(vector) = self.isr.highest() {
                    self.isr.clear(vector);
                }
            }
            SVR => self.svr = low & 0x13FF,
            ESR => self.esr = 0,
            ICR => {
                self.icr = value & !(1 << 12);
                self.interprocessor(value);
            }
            LVT_TIMER => {
                let old_mode = self.timer_mode();
                self.lvt_timer = low & 0x0007_10FF;
                if self.timer_mode() != old_mode {
                    self.expiry = None;
                    self.tsc_deadline = 0;
                }
            }
            INITIAL_COUNT => {
                self.initial_count = low;
                self.count_start = now;
                self.expiry = if self.timer_mode() != TimerMode::TscDeadline && low != 0 {
                    Some(now + (u64::from(low) << self.divide_shift()))
                } else {
                    None
                };
            }
            DIVIDE => self.divide = low & 0xB,
            SELF_IPI => self.raise(low as u8),
            _ => match Self::lvt_index(msr) {
                Some(index) => self.lvt_other[index] = low & 0x0001_F7FF,
                None => return Err(()),
            },
        }
        Ok(())
    }

    /// ICR (SDM 11.6.1): only fixed interrupts to this vCPU are delivered
    /// (self, all-including-self, or destination 0); INIT, SIPI and NMI have
    /// no other vCPU to reach.
    fn interprocessor(&mut self, icr: u64) {
        let delivery = (icr >> 8) & 7;
        let shorthand = (icr >> 18) & 3;
        let destination = icr >> 32;
        let to_self = match shorthand {
            0 => destination == 0 || destination == 0xFFFF_FFFF,
            1 | 2 => true,
            _ => false,
        };
        if delivery == 0 && to_self {
            self.raise(icr as u8);
        }
    }

    /// Marks `vector` pending (an MSI, a self-IPI, the timer). Vectors
    /// below 16 are illegal (SDM 11.5.2) and set the error register.
    pub fn raise(&mut self, vector: u8) {
        if vector < 16 {
            self.esr |= 1 << 6;
            return;
        }
        self.irr.set(vector);
    }

    /// Fires the timer if it has expired by `now`.
    pub fn update(&mut self, now: u64) {
        let Some(expiry) = self.expiry else { return };
        if now < expiry {
            return;
        }
        if self.lvt_timer & MASKED == 0 {
            self.raise(self.lvt_timer as u8);
        }
        self.expiry = match self.timer_mode() {
            TimerMode::Periodic if self.initial_count != 0 => {
                let period = u64::from(self.initial_count) << self.divide_shift();
                let periods = (now - expiry) / period + 1;
                Some(expiry + periods * period)
            }
            TimerMode::TscDeadline => {
                self.tsc_deadline = 0;
                None
            }
            _ => None,
        };
    }

    /// When the timer fires next, in TSC ticks.
    pub fn next_expiry(&self) -> Option<u64> {
        self.expiry
    }

    /// The vector to deliver now, if one's priority class beats PPR.
    pub fn pending(&self) -> Option<u8> {
        let vector = self.irr.highest()?;
        (u32::from(vector) & 0xF0 > self.ppr() & 0xF0).then_some(vector)
    }

    /// Whether any vector is requested at all (wakes a halted vCPU).
    pub fn has_requests(&self) -> bool {
        self.irr.highest().is_some()
    }

    /// The vCPU took `vector`: IRR → ISR (SDM 11.8.4).
    pub fn accept(&mut self, vector: u8) {
        self.irr.clear(vector);
        self.isr.set(vector);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use register::*;

    #[test]
    fn tsc_deadline_timer_fires_once_at_the_deadline() {
        let mut apic = Lapic::new();
        apic.write(SVR, 0x1FF, 0).unwrap();
        apic.write(LVT_TIMER, (2 << 17) | 0xEC, 0).unwrap();
        apic.write(MSR_TSC_DEADLINE, 1000, 0).unwrap();
        assert_eq!(apic.next_expiry(), Some(1000));
        apic.update(999);
        assert_eq!(apic.pending(), None);
        apic.update(1000);
        assert_eq!(apic.pending(), Some(0xEC));
        assert_eq!(apic.next_expiry(), None);
        assert_eq!(apic.read(MSR_TSC_DEADLINE, 1000), Some(0));
        apic.accept(0xEC);
        assert_eq!(apic.pending(), None);
        assert_eq!(apic.read(ISR7, 0), Some(1 << (0xEC - 224)));
        apic.write(EOI, 0, 0).unwrap();
        assert_eq!(apic.read(ISR7, 0), Some(0));
    }

    #[test]
    fn priorities_hold_lower_vectors_until_eoi() {
        let mut apic = Lapic::new();
        apic.raise(0x40);
        apic.accept(0x40);
        apic.raise(0x31);
        assert_eq!(apic.pending(), None, "class 3 waits behind class 4");
        apic.raise(0x51);
        assert_eq!(apic.pending(), Some(0x51));
        apic.write(EOI, 0, 0).unwrap(); // ends 0x40
        apic.accept(0x51);
        apic.write(EOI, 0, 0).unwrap();
        assert_eq!(apic.pending(), Some(0x31));
        apic.write(TPR, 0x30, 0).unwrap();
        assert_eq!(apic.pending(), None, "TPR masks class 3");
    }

    #[test]
    fn self_ipi_and_icr_to_self() {
        let mut apic = Lapic::new();
        apic.write(SELF_IPI, 0xF6, 0).unwrap();
        assert_eq!(apic.pending(), Some(0xF6));
        apic.accept(0xF6);
        apic.write(EOI, 0, 0).unwrap();
        apic.write(ICR, (1 << 18) | 0xF7, 0).unwrap();
        assert_eq!(apic.pending(), Some(0xF7));
        let mut apic = Lapic::new();
        apic.write(ICR, (5 << 8) | (1 << 32), 0).unwrap(); // INIT elsewhere
        assert_eq!(apic.pending(), None);
    }

    #[test]
    fn one_shot_and_periodic_count_down() {
        let mut apic = Lapic::new();
        apic.write(DIVIDE, 0b0000, 0).unwrap(); // divide by 2
        apic.write(LVT_TIMER, 0x30, 0).unwrap();
        apic.write(INITIAL_COUNT, 100, 0).unwrap();
        assert_eq!(apic.read(CURRENT_COUNT, 100), Some(50));
        apic.update(199);
        assert_eq!(apic.pending(), None);
        apic.update(200);
        assert_eq!(apic.pending(), Some(0x30));
        assert_eq!(apic.next_expiry(), None);
        let mut apic = Lapic::new();
        apic.write(DIVIDE, 0b1011, 0).unwrap(); // divide by 1
        apic.write(LVT_TIMER, (1 << 17) | 0x31, 0).unwrap();
        apic.write(INITIAL_COUNT, 10, 0).unwrap();
        apic.update(25);
        assert_eq!(apic.next_expiry(), Some(30));
    }

    #[test]
    fn bad_writes_fault() {
        let mut apic = Lapic::new();
        assert_eq!(apic.write(EOI, 1, 0), Err(()));
        assert_eq!(apic.write(TPR, 1 << 40, 0), Err(()));
        assert_eq!(apic.write(0x8FF, 0, 0), Err(()));
        assert_eq!(apic.read(EOI, 0), None);
        assert_eq!(apic.write(MSR_APIC_BASE, 0xFEE0_0900, 0), Err(()));
        apic.raise(3);
        assert_eq!(apic.pending(), None);
        assert_ne!(apic.read(ESR, 0), Some(0));
    }
}
