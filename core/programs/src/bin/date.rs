//! date [-n]: print the date from /dev/time (date(1)).
//!
//! The clock is the kernel's: seconds since boot, shown as 1970.
#![cfg_attr(target_os = "none", no_std)]
#![no_main]

core_user::program!(main);

use core_user::prelude::*;
use core_user::{println, sys};

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Year, month (1..=12) and day of the proleptic Gregorian calendar
/// for `days` since 1970-01-01 (Howard Hinnant's civil_from_days).
fn civil(days: i64) -> (i64, usize, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as usize, day)
}

fn main(argv: Vec<String>) -> Result<(), String> {
    let time = sys::read_file("/dev/time")?;
    let text = String::from_utf8_lossy(&time);
    let seconds: i64 = text
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("date: bad /dev/time")?;
    if argv.get(1).is_some_and(|a| a == "-n") {
        println!("{seconds}");
        return Ok(());
    }
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil(days);
    println!(
        "{} {} {:>2} {:02}:{:02}:{:02} GMT {}",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[month - 1],
        day,
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        year
    );
    Ok(())
}
