//! The one unsafe step of delegation: handing a checked call to the kernel.
//!
//! Everything before it is `syscall::Call::prepare`, which admits only the
//! table's calls and gives every pointer argument a buffer of its own. This
//! runs only in a proxy process (`proxy::serve`), whose sole descriptors are
//! 0, 1 and 2 (its two pipes and the link), which the table refuses: so a
//! delegated `close` or `read` cannot touch a descriptor that Rust code in
//! this process owns.

use crate::syscall::Call;

/// Runs `call` and returns the kernel's result: the value, or `-errno`.
pub fn run(call: &mut Call) -> i64 {
    let words = call.words();
    let number = libc::c_long::from(call.entry.number);
    // SAFETY: `call` was built by `Call::prepare`, so `number` is one of
    // the table's calls, and every word the table marks as a pointer is the
    // address of a buffer owned by `call` (borrowed mutably here, so alive
    // and unmoved until the kernel returns) and at least as long as the
    // kernel may read or write for it: an `Out` buffer is exactly the
    // clamped length argument, a fixed one the x86_64 size of its
    // structure, a path is NUL-terminated. No call in the table keeps a
    // pointer past its return, maps memory or changes signal state, and
    // descriptors 0-2 (the only ones Rust owns in a proxy) are refused.
    let result = unsafe {
        libc::syscall(
            number,
            words[0] as libc::c_long,
            words[1] as libc::c_long,
            words[2] as libc::c_long,
            words[3] as libc::c_long,
            words[4] as libc::c_long,
            words[5] as libc::c_long,
        )
    };
    if result == -1 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        -i64::from(errno)
    } else {
        result
    }
}
