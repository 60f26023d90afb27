//! hvm's own GDT and TSS: VM exits need a non-null host TR (SDM 27.2.3).

use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::segmentation::SegmentSelector;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::PrivilegeLevel;

/// Selector of the TSS in hvm's GDT.
pub const TSS_SELECTOR: u16 = 0x18;

static TSS: TaskStateSegment = TaskStateSegment::new();
static GDT: Once<GlobalDescriptorTable> = Once::new();

/// Address of hvm's TSS.
pub fn tss_address() -> u64 {
    &TSS as *const TaskStateSegment as u64
}

/// Loads a GDT with code 0x08, data 0x10 and the TSS at 0x18.
pub fn init() {
    let gdt = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(&TSS));
        debug_assert_eq!((code.0, data.0, tss.0), (0x08, 0x10, TSS_SELECTOR));
        gdt
    });
    gdt.load();
    // SAFETY: the selectors name the descriptors just loaded: 64-bit code,
    // data, and an available TSS that lives for ever (static).
    unsafe {
        CS::set_reg(SegmentSelector::new(1, PrivilegeLevel::Ring0));
        let data = SegmentSelector::new(2, PrivilegeLevel::Ring0);
        SS::set_reg(data);
        DS::set_reg(data);
        ES::set_reg(data);
        load_tss(SegmentSelector::new(3, PrivilegeLevel::Ring0));
    }
}
