//! The Linux x86 boot protocol: bzImage header, boot_params, e820, layout.
//!
//! hvm loads a stock bzImage the way `Documentation/x86/boot.rst` (the
//! "64-bit boot protocol") says a boot loader must: the protected-mode code
//! at 1 MiB, a zero page (`struct boot_params`) with the setup header copied
//! from the image and the loader's fields filled in, the command line and
//! the initrd in memory, and the CPU in long mode with identity paging at
//! `load address + 0x200`. The image is untrusted input: every field used is
//! checked against the file and the cell before anything is copied.
//!
//! The guest-physical layout of a Linux cell (the real-mode area stays RAM,
//! as boot.rst asks for the first 640 KiB):
//!
//! | address | what |
//! |---|---|
//! | `0x6000` | top of the entry stack |
//! | `0x7000` | boot_params (the zero page) |
//! | `0x8000` | GDT: null, null, `__BOOT_CS` 0x10, `__BOOT_DS` 0x18 |
//! | `0x9000..0xF000` | page tables: PML4, PDPT, 4 PDs (first 4 GiB, 2 MiB pages) |
//! | `0x20000` | command line |
//! | `0x9FC00..0x100000` | reserved in e820; ACPI tables at `0xE0000` |
//! | `0x100000` | the protected-mode kernel |
//! | top of RAM | the initrd, page aligned |

/// Where boot_params go.
pub const BOOT_PARAMS: u64 = 0x7000;
/// Where the GDT goes.
pub const GDT: u64 = 0x8000;
/// First page-table page (the PML4).
pub const PAGE_TABLES: u64 = 0x9000;
/// Where the command line goes.
pub const CMDLINE: u64 = 0x2_0000;
/// Where the ACPI tables go.
pub const ACPI_TABLES: u64 = 0xE_0000;
/// Where the protected-mode kernel is loaded (boot.rst: "loaded at 1 MiB").
pub const KERNEL_LOAD: u64 = 0x10_0000;
/// Stack pointer at entry.
pub const STACK_TOP: u64 = 0x6000;
/// End of low RAM in the e820 map (the EBDA convention).
pub const LOW_RAM_END: u64 = 0x9_FC00;
/// Size of the identity map built for entry (covers RAM and MMIO below 4 GiB).
pub const IDENTITY_MAP: u64 = 4 << 30;

/// Flat GDT entries: `__BOOT_CS` (0x10) 64-bit code and `__BOOT_DS` (0x18)
/// data, both 4 GiB flat as boot.rst requires.
pub const GDT_ENTRIES: [u64; 4] = [0, 0, 0x00AF_9A00_0000_FFFF, 0x00CF_9200_0000_FFFF];

/// boot_params offsets (boot.rst "The zero page", `struct boot_params`).
mod offset {
    pub const ACPI_RSDP_ADDR: usize = 0x070;
    pub const E820_ENTRIES: usize = 0x1E8;
    pub const SETUP_SECTS: usize = 0x1F1;
    pub const BOOT_FLAG: usize = 0x1FE;
    pub const HEADER_END_BYTE: usize = 0x201;
    pub const HEADER: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21C;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22C;
    pub const XLOADFLAGS: usize = 0x236;
    pub const CMDLINE_SIZE: usize = 0x238;
    pub const INIT_SIZE: usize = 0x260;
    pub const E820_TABLE: usize = 0x2D0;
}

/// Most e820 entries boot_params holds.
pub const E820_MAX: usize = 128;

/// e820 types (ACPI "Address Range Types").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum E820Type {
    Ram = 1,
    Reserved = 2,
}

/// One e820 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub address: u64,
    pub size: u64,
    pub kind: E820Type,
}

/// The memory map of a Linux cell of `size` bytes: low RAM, the reserved
/// BIOS area (where the ACPI tables live), RAM from 1 MiB to the end.
pub fn e820_map(size: u64) -> [E820Entry; 3] {
    [
        E820Entry {
            address: 0,
            size: LOW_RAM_END,
            kind: E820Type::Ram,
        },
        E820Entry {
            address: LOW_RAM_END,
            size: KERNEL_LOAD - LOW_RAM_END,
            kind: E820Type::Reserved,
        },
        E820Entry {
            address: KERNEL_LOAD,
            size: size - KERNEL_LOAD,
            kind: E820Type::Ram,
        },
    ]
}

/// Why a bzImage cannot be booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BzImageError {
    /// Shorter than its own setup code says.
    Truncated,
    /// No `HdrS` signature or boot flag: not a bzImage.
    NotBzImage,
    /// Boot protocol older than 2.12 (no 64-bit entry point).
    TooOld(u16),
    /// The kernel does not offer the 64-bit entry (`XLF_KERNEL_64`).
    No64BitEntry,
    /// Not loadable high (`LOADED_HIGH` clear): a zImage.
    NotLoadedHigh,
    /// The kernel, its decompression space, or the initrd do not fit.
    TooBig { needed: u64, available: u64 },
    /// The command line is longer than the kernel accepts.
    CommandLineTooLong { length: usize, limit: u32 },
}

impl core::fmt::Display for BzImageError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated => f.write_str("the bzImage is truncated"),
            Self::NotBzImage => f.write_str("not a bzImage (no HdrS header)"),
            Self::TooOld(v) => write!(f, "boot protocol {v:#x} is older than 2.12"),
            Self::No64BitEntry => f.write_str("the kernel has no 64-bit entry point"),
            Self::NotLoadedHigh => f.write_str("the kernel cannot be loaded at 1 MiB"),
            Self::TooBig { needed, available } => write!(
                f,
                "needs {} MiB of cell memory, the cell has {} MiB",
                needed >> 20,
                available >> 20
            ),
            Self::CommandLineTooLong { length, limit } => {
                write!(
                    f,
                    "command line of {length} bytes exceeds the kernel's {limit}"
                )
            }
        }
    }
}

/// A checked bzImage.
#[derive(Clone, Copy, Debug)]
pub struct BzImage<'a> {
    image: &'a [u8],
    /// Offset in the file of the protected-mode kernel.
    pub kernel_offset: usize,
    /// Boot protocol version.
    pub version: u16,
    /// Memory the kernel needs from its load address while decompressing.
    pub init_size: u64,
    /// Highest address the initrd may end at.
    pub initrd_addr_max: u64,
    /// Longest command line, without the NUL.
    pub cmdline_size: u32,
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

impl<'a> BzImage<'a> {
    /// Checks the setup header (boot.rst "The real-mode kernel header").
    pub fn parse(image: &'a [u8]) -> Result<Self, BzImageError> {
        if image.len() < 0x264 {
            return Err(BzImageError::Truncated);
        }
        if u16_at(image, offset::BOOT_FLAG) != 0xAA55 || &image[0x202..0x206] != b"HdrS" {
            return Err(BzImageError::NotBzImage);
        }
        let version = u16_at(image, offset::VERSION);
        if version < 0x020C {
            return Err(BzImageError::TooOld(version));
        }
        if image[offset::LOADFLAGS] & 1 == 0 {
            return Err(BzImageError::NotLoadedHigh);
        }
        if u16_at(image, offset::XLOADFLAGS) & 1 == 0 {
            return Err(BzImageError::No64BitEntry);
        }
        // "If setup_sects is 0, the real value is 4."
        let setup_sects = match image[offset::SETUP_SECTS] {
            0 => 4,
            n => usize::from(n),
        };
        let kernel_offset = (setup_sects + 1) * 512;
        if kernel_offset >= image.len() {
            return Err(BzImageError::Truncated);
        }
        Ok(Self {
            image,
            kernel_offset,
            version,
            init_size: u64::from(u32_at(image, offset::INIT_SIZE)),
            initrd_addr_max: u64::from(u32_at(image, offset::INITRD_ADDR_MAX)),
            cmdline_size: u32_at(image, offset::CMDLINE_SIZE),
        })
    }

    /// The protected-mode kernel, loaded at [`KERNEL_LOAD`].
    pub fn kernel(&self) -> &'a [u8] {
        &self.image[self.kernel_offset..]
    }

    /// The 64-bit entry point (boot.rst: "load address + 0x200").
    pub fn entry(&self) -> u64 {
        KERNEL_LOAD + 0x200
    }

    /// The setup header bytes to copy into boot_params: from 0x1F1 to the
    /// end the byte at 0x201 gives ("the length of the header").
    fn header(&self) -> &'a [u8] {
        let end = (offset::HEADER + usize::from(self.image[offset::HEADER_END_BYTE]))
            .min(self.image.len())
            .min(0x280);
        &self.image[offset::SETUP_SECTS..end]
    }
}

/// Where the pieces of a Linux cell go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Guest-physical address of the initrd (0 if none).
    pub initrd: u64,
}

/// Decides where the initrd goes (as high as allowed, page aligned) and
/// checks that the kernel's decompression space fits below it.
pub fn place(
    image: &BzImage<'_>,
    cell_size: u64,
    initrd_len: u64,
) -> Result<Placement, BzImageError> {
    // The decompressor runs from the load address and extracts to at least
    // LOAD_PHYSICAL_ADDR (16 MiB on Debian's kernels); keep both clear.
    let kernel_end = KERNEL_LOAD.max(16 << 20) + image.init_size;
    let top = cell_size.min(image.initrd_addr_max.saturating_add(1));
    let initrd = if initrd_len == 0 {
        0
    } else {
        top.saturating_sub(initrd_len) & !0xFFF
    };
    let needed = kernel_end + initrd_len + (1 << 20);
    if needed > cell_size || (initrd_len != 0 && initrd < kernel_end) {
        return Err(BzImageError::TooBig {
            needed,
            available: cell_size,
        });
    }
    if (image.kernel().len() as u64) > image.init_size.max(1) * 4 {
        return Err(BzImageError::TooBig {
            needed: image.kernel().len() as u64,
            available: image.init_size,
        });
    }
    Ok(Placement { initrd })
}

/// Fills the zero page (boot.rst "Details of header fields" and "The
/// 64-bit boot protocol"): the image's setup header, then the loader's own
/// fields.
pub fn build_boot_params(
    params: &mut [u8; 4096],
    image: &BzImage<'_>,
    cmdline_len: usize,
    initrd: u64,
    initrd_len: u64,
    rsdp: u64,
    e820: &[E820Entry],
) -> Result<(), BzImageError> {
    if cmdline_len > image.cmdline_size as usize {
        return Err(BzImageError::CommandLineTooLong {
            length: cmdline_len,
            limit: image.cmdline_size,
        });
    }
    params.fill(0);
    let header = image.header();
    params[offset::SETUP_SECTS..offset::SETUP_SECTS + header.len()].copy_from_slice(header);
    // "0xFF: undefined" loader id; boot.rst asks unregistered loaders to use it.
    params[offset::TYPE_OF_LOADER] = 0xFF;
    // LOADED_HIGH stays; clear QUIET_FLAG (5) and KEEP_SEGMENTS (6), set
    // CAN_USE_HEAP (7) as every 2.01+ loader does.
    params[offset::LOADFLAGS] = (params[offset::LOADFLAGS] & 0x01) | 0x80;
    params[offset::CMD_LINE_PTR..offset::CMD_LINE_PTR + 4]
        .copy_from_slice(&(CMDLINE as u32).to_le_bytes());
    params[offset::RAMDISK_IMAGE..offset::RAMDISK_IMAGE + 4]
        .copy_from_slice(&(initrd as u32).to_le_bytes());
    params[offset::RAMDISK_SIZE..offset::RAMDISK_SIZE + 4]
        .copy_from_slice(&(initrd_len as u32).to_le_bytes());
    params[offset::ACPI_RSDP_ADDR..offset::ACPI_RSDP_ADDR + 8].copy_from_slice(&rsdp.to_le_bytes());
    let count = e820.len().min(E820_MAX);
    params[offset::E820_ENTRIES] = count as u8;
    for (i, entry) in e820[..count].iter().enumerate() {
        let at = offset::E820_TABLE + 20 * i;
        params[at..at + 8].copy_from_slice(&entry.address.to_le_bytes());
        params[at + 8..at + 16].copy_from_slice(&entry.size.to_le_bytes());
        params[at + 16..at + 20].copy_from_slice(&(entry.kind as u32).to_le_bytes());
    }
    Ok(())
}

/// The entry page tables: PML4 → PDPT → four PDs of 2 MiB pages mapping
/// the first 4 GiB onto itself (boot.rst: identity mapping covering the
/// kernel, boot_params and the command line). Returns the pages in order,
/// to be written at [`PAGE_TABLES`] + 4 KiB × index.
pub fn identity_tables() -> [[u64; 512]; 6] {
    let mut pages = [[0u64; 512]; 6];
    let present_writable = 0x3;
    pages[0][0] = (PAGE_TABLES + 0x1000) | present_writable;
    for gib in 0..4u64 {
        pages[1][gib as usize] = (PAGE_TABLES + 0x2000 + gib * 0x1000) | present_writable;
        for entry in 0..512u64 {
            let address = (gib << 30) | (entry << 21);
            // Present, writable, 2 MiB page (PS).
            pages[2 + gib as usize][entry as usize] = address | 0x83;
        }
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc_free::image;

    /// A minimal bzImage: header fields as a 6.1 kernel has them.
    mod alloc_free {
        pub fn image(len: usize) -> std::vec::Vec<u8> {
            let mut bytes = std::vec![0u8; len];
            bytes[0x1F1] = 27; // setup_sects
            bytes[0x1FE..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
            bytes[0x201] = 0x6A; // header length byte (0x202 + 0x6A = 0x26C)
            bytes[0x202..0x206].copy_from_slice(b"HdrS");
            bytes[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
            bytes[0x211] = 0x01; // LOADED_HIGH
            bytes[0x22C..0x230].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
            bytes[0x236..0x238].copy_from_slice(&0x007Fu16.to_le_bytes());
            bytes[0x238..0x23C].copy_from_slice(&2047u32.to_le_bytes());
            bytes[0x260..0x264].copy_from_slice(&(40u32 << 20).to_le_bytes());
            bytes
        }
    }

    #[test]
    fn parses_a_64_bit_bzimage() {
        let bytes = image(64 * 1024);
        let image = BzImage::parse(&bytes).unwrap();
        assert_eq!(image.kernel_offset, 28 * 512);
        assert_eq!(image.entry(), 0x10_0200);
        assert_eq!(image.version, 0x020F);
        assert_eq!(image.cmdline_size, 2047);
        assert_eq!(image.kernel().len(), 64 * 1024 - 28 * 512);
    }

    #[test]
    fn rejects_what_it_cannot_boot() {
        assert_eq!(
            BzImage::parse(&[0; 100]).unwrap_err(),
            BzImageError::Truncated
        );
        let mut bytes = image(8192);
        bytes[0x202] = b'X';
        assert_eq!(
            BzImage::parse(&bytes).unwrap_err(),
            BzImageError::NotBzImage
        );
        let mut bytes = image(8192);
        bytes[0x236] = 0;
        assert_eq!(
            BzImage::parse(&bytes).unwrap_err(),
            BzImageError::No64BitEntry
        );
        let mut bytes = image(8192);
        bytes[0x206] = 0x0B;
        assert_eq!(
            BzImage::parse(&bytes).unwrap_err(),
            BzImageError::TooOld(0x020B)
        );
        let mut bytes = image(8192);
        bytes[0x1F1] = 200; // setup runs past the end of the file
        assert_eq!(BzImage::parse(&bytes).unwrap_err(), BzImageError::Truncated);
    }

    #[test]
    fn boot_params_carry_the_loader_fields() {
        let bytes = image(64 * 1024);
        let image = BzImage::parse(&bytes).unwrap();
        let mut params = [0xEEu8; 4096];
        let map = e820_map(128 << 20);
        build_boot_params(
            &mut params,
            &image,
            20,
            0x7F0_0000,
            0xC_0000,
            0xE_0000,
            &map,
        )
        .unwrap();
        assert_eq!(params[0x210], 0xFF);
        assert_eq!(params[0x211], 0x81);
        assert_eq!(u32_at(&params, 0x228), CMDLINE as u32);
        assert_eq!(u32_at(&params, 0x218), 0x7F0_0000);
        assert_eq!(u32_at(&params, 0x21C), 0xC_0000);
        assert_eq!(&params[0x202..0x206], b"HdrS");
        assert_eq!(params[0x1E8], 3);
        assert_eq!(
            u64::from_le_bytes(params[0x070..0x078].try_into().unwrap()),
            0xE_0000
        );
        // Third e820 entry: RAM from 1 MiB to the end.
        let at = 0x2D0 + 40;
        assert_eq!(
            u64::from_le_bytes(params[at..at + 8].try_into().unwrap()),
            0x10_0000
        );
        assert_eq!(
            u64::from_le_bytes(params[at + 8..at + 16].try_into().unwrap()),
            (128 << 20) - 0x10_0000
        );
        assert_eq!(u32_at(&params, at + 16), 1);
        // Bytes past the header stay zero (not the image's junk).
        assert_eq!(params[0x300], 0);
        assert_eq!(
            build_boot_params(&mut params, &image, 4000, 0, 0, 0, &map).unwrap_err(),
            BzImageError::CommandLineTooLong {
                length: 4000,
                limit: 2047
            }
        );
    }

    #[test]
    fn initrd_goes_high_and_clear_of_the_kernel() {
        let bytes = image(64 * 1024);
        let image = BzImage::parse(&bytes).unwrap();
        let placement = place(&image, 128 << 20, 850_000).unwrap();
        assert_eq!(placement.initrd % 4096, 0);
        assert!(placement.initrd + 850_000 <= 128 << 20);
        assert!(placement.initrd >= (16 << 20) + (40 << 20));
        assert!(matches!(
            place(&image, 48 << 20, 850_000),
            Err(BzImageError::TooBig { .. })
        ));
    }

    #[test]
    fn identity_tables_map_4_gib_with_2_mib_pages() {
        let pages = identity_tables();
        assert_eq!(pages[0][0], 0xA003);
        assert_eq!(pages[1][3], 0xE003);
        assert_eq!(pages[2][1], 0x20_0083);
        assert_eq!(pages[5][511], 0xFFE0_0083);
    }
}
