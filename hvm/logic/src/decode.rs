//! Decoding the `mov` forms guests use for MMIO, and guest page walks.
//!
//! An EPT violation on a device page tells hvm the guest-physical address
//! and whether it was a read or a write (SDM Table 28-7), but not the size,
//! the register or the instruction length (the VM-exit instruction-length
//! field is undefined for EPT violations, SDM 28.2.5). So hvm reads the
//! instruction at the guest's RIP, translating RIP through the guest's own
//! page tables ([`translate`], SDM Vol. 3 4.5 "4-Level Paging"), and
//! decodes it here. Only the simple forms device drivers use are accepted
//! (SDM Vol. 2: MOV 88/89/8A/8B/C6/C7, MOVZX 0F B6/B7, and TEST 84/85/F6/F7,
//! which virtio-drivers' status polling compiles to) in 64-bit mode;
//! anything else is refused and fails the cell, never guessed at.

/// Where a store's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A general-purpose register (SDM numbering); `high_byte` selects
    /// AH/CH/DH/BH.
    Register { number: u8, high_byte: bool },
    /// An immediate, already sign-extended to the operand size.
    Immediate(u64),
}

/// What the instruction does with the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Read `size` bytes into register `number` (`destination_size` bytes
    /// written, zero-extended for MOVZX).
    Load {
        number: u8,
        high_byte: bool,
        destination_size: u8,
    },
    /// Write `size` bytes.
    Store(Source),
    /// Read `size` bytes and AND them with the source, setting only the
    /// flags ([`test_flags`]).
    Test(Source),
}

/// A decoded MMIO instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioInstruction {
    /// Bytes, to advance RIP by.
    pub length: u8,
    /// Access size in bytes: 1, 2, 4 or 8.
    pub size: u8,
    pub operation: Operation,
}

/// Why an instruction was not decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Ran out of bytes (or past the 15-byte limit).
    Truncated,
    /// An opcode or form this decoder does not emulate.
    Unsupported(u8),
    /// A register operand where memory was expected (cannot fault on EPT).
    NotMemory,
}

/// Decodes one instruction in 64-bit mode.
pub fn decode(bytes: &[u8]) -> Result<MmioInstruction, DecodeError> {
    let bytes = &bytes[..bytes.len().min(15)];
    let mut at = 0;
    let next = |at: &mut usize| -> Result<u8, DecodeError> {
        let byte = *bytes.get(*at).ok_or(DecodeError::Truncated)?;
        *at += 1;
        Ok(byte)
    };
    // Legacy prefixes (SDM Vol. 2 2.1.1): operand size, address size,
    // segment overrides (ignored in 64-bit mode but FS/GS bases do not
    // matter here: the address is already known).
    let mut operand16 = false;
    let mut byte = next(&mut at)?;
    loop {
        match byte {
            0x66 => operand16 = true,
            0x67 | 0x2E | 0x36 | 0x3E | 0x26 | 0x64 | 0x65 => {}
            _ => break,
        }
        byte = next(&mut at)?;
    }
    // REX (SDM Vol. 2 2.2.1).
    let mut rex = 0u8;
    if byte & 0xF0 == 0x40 {
        rex = byte;
        byte = next(&mut at)?;
    }
    let rex_w = rex & 8 != 0;
    let rex_r = (rex >> 2) & 1;
    let full_size = if rex_w {
        8
    } else if operand16 {
        2
    } else {
        4
    };
    enum Form {
        Store,
        Load,
        StoreImmediate,
        ZeroExtend,
        Test,
        TestImmediate,
    }
    let (form, size) = match byte {
        0x88 => (Form::Store, 1),
        0x89 => (Form::Store, full_size),
        0x8A => (Form::Load, 1),
        0x8B => (Form::Load, full_size),
        0xC6 => (Form::StoreImmediate, 1),
        0xC7 => (Form::StoreImmediate, full_size),
        0x84 => (Form::Test, 1),
        0x85 => (Form::Test, full_size),
        0xF6 => (Form::TestImmediate, 1),
        0xF7 => (Form::TestImmediate, full_size),
        0x0F => match next(&mut at)? {
            0xB6 => (Form::ZeroExtend, 1),
            0xB7 => (Form::ZeroExtend, 2),
            other => return Err(DecodeError::Unsupported(other)),
        },
        other => return Err(DecodeError::Unsupported(other)),
    };
    // ModRM, SIB and displacement (SDM Vol. 2 2.1.5, Tables 2-2 and 2-3).
    let modrm = next(&mut at)?;
    let mode = modrm >> 6;
    let reg = ((modrm >> 3) & 7) | (rex_r << 3);
    let rm = modrm & 7;
    if mode == 3 {
        return Err(DecodeError::NotMemory);
    }
    let mut displacement = match mode {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    if rm == 4 {
        let sib = next(&mut at)?;
        if mode == 0 && sib & 7 == 5 {
            displacement = 4;
        }
    } else if mode == 0 && rm == 5 {
        displacement = 4; // RIP-relative
    }
    at += displacement;
    if at > bytes.len() {
        return Err(DecodeError::Truncated);
    }
    // Without REX, byte registers 4..7 are AH, CH, DH, BH.
    let byte_register = |number: u8| {
        if rex == 0 && (4..8).contains(&number) {
            (number - 4, true)
        } else {
            (number, false)
        }
    };
    let operation = match form {
        Form::Store if size == 1 => {
            let (number, high_byte) = byte_register(reg);
            Operation::Store(Source::Register { number, high_byte })
        }
        Form::Store => Operation::Store(Source::Register {
            number: reg,
            high_byte: false,
        }),
        Form::Load if size == 1 => {
            let (number, high_byte) = byte_register(reg);
            Operation::Load {
                number,
                high_byte,
                destination_size: 1,
            }
        }
        Form::Load => Operation::Load {
            number: reg,
            high_byte: false,
            destination_size: size,
        },
        Form::ZeroExtend => Operation::Load {
            number: reg,
            high_byte: false,
            destination_size: full_size,
        },
        Form::Test if size == 1 => {
            let (number, high_byte) = byte_register(reg);
            Operation::Test(Source::Register { number, high_byte })
        }
        Form::Test => Operation::Test(Source::Register {
            number: reg,
            high_byte: false,
        }),
        Form::StoreImmediate | Form::TestImmediate => {
            // C6/C7 /0 is MOV, F6/F7 /0 is TEST; other /digits (NOT, NEG,
            // MUL, DIV…) are not device accesses hvm emulates.
            if reg & 7 != 0 {
                return Err(DecodeError::Unsupported(byte));
            }
            let test = matches!(form, Form::TestImmediate);
            let width = usize::from(size.min(4));
            let end = at + width;
            let raw = bytes.get(at..end).ok_or(DecodeError::Truncated)?;
            at = end;
            let mut value = 0u64;
            for (i, b) in raw.iter().enumerate() {
                value |= u64::from(*b) << (8 * i);
            }
            // imm32 is sign-extended to 64 bits for REX.W.
            if size == 8 && value & 0x8000_0000 != 0 {
                value |= 0xFFFF_FFFF_0000_0000;
            }
            if test {
                Operation::Test(Source::Immediate(value))
            } else {
                Operation::Store(Source::Immediate(value))
            }
        }
    };
    Ok(MmioInstruction {
        length: at as u8,
        size,
        operation,
    })
}

/// The value of a register after a load (SDM Vol. 1 3.4.1.1: a 32-bit
/// destination zero-extends into the full register; 8- and 16-bit ones
/// leave the rest alone).
pub fn merge_load(old: u64, value: u64, destination_size: u8, high_byte: bool) -> u64 {
    match (destination_size, high_byte) {
        (1, true) => (old & !0xFF00) | ((value & 0xFF) << 8),
        (1, false) => (old & !0xFF) | (value & 0xFF),
        (2, _) => (old & !0xFFFF) | (value & 0xFFFF),
        (4, _) => value & 0xFFFF_FFFF,
        _ => value,
    }
}

/// RFLAGS after `TEST` produced `result` at `size` bytes (SDM Vol. 2
/// TEST: CF and OF cleared, SF, ZF and PF from the result, AF undefined and
/// left alone).
pub fn test_flags(rflags: u64, result: u64, size: u8) -> u64 {
    const CF: u64 = 1 << 0;
    const PF: u64 = 1 << 2;
    const ZF: u64 = 1 << 6;
    const SF: u64 = 1 << 7;
    const OF: u64 = 1 << 11;
    let bits = 8 * u32::from(size);
    let result = if bits >= 64 {
        result
    } else {
        result & ((1u64 << bits) - 1)
    };
    let mut flags = rflags & !(CF | PF | ZF | SF | OF);
    if result == 0 {
        flags |= ZF;
    }
    if (result >> (bits - 1)) & 1 != 0 {
        flags |= SF;
    }
    if (result as u8).count_ones().is_multiple_of(2) {
        flags |= PF;
    }
    flags
}

/// The bytes a store writes, from a register value.
pub fn store_value(register: u64, high_byte: bool) -> u64 {
    if high_byte {
        register >> 8
    } else {
        register
    }
}

/// Translates a linear address through 4-level paging (SDM Vol. 3 4.5),
/// reading table entries with `read` (guest-physical, 8 bytes). With
/// paging off the address is physical. Returns `None` on a non-present
/// entry or a table outside the guest.
pub fn translate(
    paging: bool,
    cr3: u64,
    linear: u64,
    read: impl Fn(u64) -> Option<u64>,
) -> Option<u64> {
    if !paging {
        return Some(linear);
    }
    const ADDRESS: u64 = 0x000F_FFFF_FFFF_F000;
    let mut table = cr3 & ADDRESS;
    for level in (0..4).rev() {
        let shift = 12 + 9 * level;
        let index = (linear >> shift) & 0x1FF;
        let entry = read(table + index * 8)?;
        if entry & 1 == 0 {
            return None;
        }
        // PS at the PDPT (1 GiB) or PD (2 MiB) level ends the walk.
        if (level == 1 || level == 2) && entry & 0x80 != 0 {
            let page_mask = (1u64 << shift) - 1;
            return Some((entry & ADDRESS & !page_mask) | (linear & page_mask));
        }
        table = entry & ADDRESS;
    }
    Some(table | (linear & 0xFFF))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(number: u8, destination_size: u8) -> Operation {
        Operation::Load {
            number,
            high_byte: false,
            destination_size,
        }
    }

    #[test]
    fn linux_readl_writel_forms() {
        // mov eax, [rdi+0x14]  (readl)
        assert_eq!(
            decode(&[0x8B, 0x47, 0x14]).unwrap(),
            MmioInstruction {
                length: 3,
                size: 4,
                operation: load(0, 4)
            }
        );
        // mov [rdx], ecx (writel)
        assert_eq!(
            decode(&[0x89, 0x0A]).unwrap(),
            MmioInstruction {
                length: 2,
                size: 4,
                operation: Operation::Store(Source::Register {
                    number: 1,
                    high_byte: false
                })
            }
        );
        // mov [rax], r8w (writew with 66 + REX.R)
        let w = decode(&[0x66, 0x44, 0x89, 0x00]).unwrap();
        assert_eq!((w.length, w.size), (4, 2));
        assert_eq!(
            w.operation,
            Operation::Store(Source::Register {
                number: 8,
                high_byte: false
            })
        );
        // movzx eax, byte [rdi+rsi*1+0x10]  (readb) with SIB and disp8
        let b = decode(&[0x0F, 0xB6, 0x44, 0x37, 0x10]).unwrap();
        assert_eq!((b.length, b.size), (5, 1));
        assert_eq!(b.operation, load(0, 4));
        // movzx ecx, word [rax]
        let w = decode(&[0x0F, 0xB7, 0x08]).unwrap();
        assert_eq!((w.length, w.size, w.operation), (3, 2, load(1, 4)));
        // mov [rip+disp32], eax
        assert_eq!(decode(&[0x89, 0x05, 1, 2, 3, 4]).unwrap().length, 6);
        // mov rax, [rbx] (64-bit)
        assert_eq!(decode(&[0x48, 0x8B, 0x03]).unwrap().size, 8);
    }

    #[test]
    fn immediates_and_byte_registers() {
        // mov byte [rax+0x14], 0x0f
        let s = decode(&[0xC6, 0x40, 0x14, 0x0F]).unwrap();
        assert_eq!(s.length, 4);
        assert_eq!(s.operation, Operation::Store(Source::Immediate(0x0F)));
        // mov dword [rax], 0x12345678
        let s = decode(&[0xC7, 0x00, 0x78, 0x56, 0x34, 0x12]).unwrap();
        assert_eq!((s.length, s.size), (6, 4));
        assert_eq!(
            s.operation,
            Operation::Store(Source::Immediate(0x1234_5678))
        );
        // mov qword [rax], -1 (imm32 sign-extended)
        let s = decode(&[0x48, 0xC7, 0x00, 0xFF, 0xFF, 0xFF, 0xFF]).unwrap();
        assert_eq!(s.operation, Operation::Store(Source::Immediate(u64::MAX)));
        // mov [rbx], ah — high byte without REX; with REX it is SPL.
        assert_eq!(
            decode(&[0x88, 0x23]).unwrap().operation,
            Operation::Store(Source::Register {
                number: 0,
                high_byte: true
            })
        );
        assert_eq!(
            decode(&[0x40, 0x88, 0x23]).unwrap().operation,
            Operation::Store(Source::Register {
                number: 4,
                high_byte: false
            })
        );
    }

    #[test]
    fn test_forms_and_their_flags() {
        // test byte [rax+0x14], 0xcf (virtio-drivers polling the status)
        let t = decode(&[0xF6, 0x40, 0x14, 0xCF, 0x75, 0xFA]).unwrap();
        assert_eq!((t.length, t.size), (4, 1));
        assert_eq!(t.operation, Operation::Test(Source::Immediate(0xCF)));
        // test [rdi], esi
        let t = decode(&[0x85, 0x37]).unwrap();
        assert_eq!(
            t.operation,
            Operation::Test(Source::Register {
                number: 6,
                high_byte: false
            })
        );
        // F6 /2 is NOT, not a test.
        assert_eq!(
            decode(&[0xF6, 0x50, 0x14]),
            Err(DecodeError::Unsupported(0xF6))
        );
        let zero = test_flags(0x2 | 1 | (1 << 11), 0, 1);
        assert_eq!(
            zero,
            0x2 | (1 << 6) | (1 << 2),
            "ZF and PF set, CF and OF clear"
        );
        let negative = test_flags(0x2, 0x80, 1);
        assert_eq!(negative & (1 << 7), 1 << 7, "SF from bit 7");
        assert_eq!(negative & (1 << 6), 0);
        assert_eq!(
            test_flags(0x2, 0x1_0000_0000, 4) & (1 << 6),
            1 << 6,
            "truncated to size"
        );
    }

    #[test]
    fn refuses_what_it_does_not_emulate() {
        assert_eq!(decode(&[]), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0x8B]), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0x8B, 0x80, 0x00]), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0x89, 0xC0]), Err(DecodeError::NotMemory));
        assert_eq!(decode(&[0xA5]), Err(DecodeError::Unsupported(0xA5))); // movs
        assert_eq!(
            decode(&[0xC7, 0x08, 0, 0, 0, 0]),
            Err(DecodeError::Unsupported(0xC7))
        );
        assert_eq!(decode(&[0x66; 20]), Err(DecodeError::Truncated));
    }

    #[test]
    fn loads_merge_like_the_cpu() {
        let old = 0x1111_2222_3333_4444;
        assert_eq!(merge_load(old, 0xAB, 1, false), 0x1111_2222_3333_44AB);
        assert_eq!(merge_load(old, 0xAB, 1, true), 0x1111_2222_3333_AB44);
        assert_eq!(merge_load(old, 0xABCD, 2, false), 0x1111_2222_3333_ABCD);
        assert_eq!(merge_load(old, 0xABCD, 4, false), 0xABCD);
        assert_eq!(store_value(0xAB00, true) & 0xFF, 0xAB);
    }

    #[test]
    fn page_walk_with_large_and_small_pages() {
        use std::collections::HashMap;
        let mut memory = HashMap::new();
        // PML4 at 0x1000 -> PDPT at 0x2000; PDPT[0] -> PD at 0x3000;
        // PD[1] is a 2 MiB page at 0x4000_0000; PD[2] -> PT at 0x4000;
        // PT[3] -> 0x5000; PDPT[1] is a 1 GiB page at 0x8000_0000.
        memory.insert(0x1000, 0x2003);
        memory.insert(0x2000, 0x3003);
        memory.insert(0x2008, 0x8000_0083);
        memory.insert(0x3008, 0x4000_0083);
        memory.insert(0x3010, 0x4003);
        memory.insert(0x4018, 0x5003);
        let read = |a: u64| memory.get(&a).copied().or(Some(0));
        assert_eq!(translate(true, 0x1000, 0x20_1234, read), Some(0x4000_1234));
        assert_eq!(translate(true, 0x1000, 0x40_3ABC, read), Some(0x5ABC));
        assert_eq!(
            translate(true, 0x1000, 0x4000_0010, read),
            Some(0x8000_0010)
        );
        assert_eq!(translate(true, 0x1000, 0x60_0000, read), None);
        assert_eq!(translate(false, 0x1000, 0x1234, read), Some(0x1234));
        assert_eq!(translate(true, 0x1000, 0x1234, |_| None), None);
    }
}
