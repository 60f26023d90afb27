//! /proc/N/ns: the namespace written as the commands that rebuild it.
//!
//! proc(3): "ns ... the mount table ... as a series of bind and mount
//! commands" that, run in order by a shell, rebuild the namespace; ns(1)
//! prints it with names quoted for rc. Invariant, tested by property: the
//! lines, replayed with bind and mount on a fresh namespace with the same
//! root, give back the same unions in the same order.
//!
//! Each mount point is written in the order it was made. Its union is
//! written as one bind or mount per member: if the directory that was
//! there before is still in the union, the members before it are bound
//! with `-b` (nearest first) and those after with `-a`; otherwise the first
//! member replaces and the rest follow with `-a`. MCREATE and MCACHE are
//! kept on the member that had them (`-c`, `-C`). Members that a bind
//! copied from a union it named are not written while that bind's members
//! are all still there: its own line copies them again.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::flags::{MountFlags, Order};
use crate::table::{Member, Namespace, Source};

/// Characters rc gives a meaning to, for which ns(1) quotes a word
/// (Plan 9's needsrcquote).
fn needs_rc_quote(c: char) -> bool {
    c <= ' ' || "`^#*[]=|\\?${}()'<>&;".contains(c)
}

/// `word` as rc reads it back: as is if it is plain, else in single quotes
/// with each quote doubled (rc(1), "Quoting").
pub fn quote(word: &str) -> String {
    if !word.is_empty() && !word.chars().any(needs_rc_quote) {
        return String::from(word);
    }
    quote_always(word)
}

/// `word` in rc's single quotes whether or not it needs them.
pub fn quote_always(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

fn line<C, I>(out: &mut String, member: &Member<C, I>, flags: MountFlags, point: &str) {
    let option = flags.option();
    let option = if option.is_empty() {
        String::new()
    } else {
        format!("{option} ")
    };
    match member.source() {
        Source::Original => {}
        Source::Bind { path } => {
            out.push_str(&format!("bind {option}{} {}\n", quote(path), quote(point)));
        }
        Source::Mount { link, spec } => {
            out.push_str(&format!("mount {option}{} {}", quote(link), quote(point)));
            if !spec.is_empty() {
                out.push(' ');
                out.push_str(&quote(spec));
            }
            out.push('\n');
        }
    }
}

/// Whether `member` came with a union another member's bind named, and
/// that bind's members are all still in the union, so that writing the bind
/// writes this member too.
fn copied_with_intact_group<C, I>(members: &[Member<C, I>], member: &Member<C, I>) -> bool {
    if !member.is_copied() {
        return false;
    }
    let group = member.group();
    let present = members.iter().filter(|m| m.group() == group).count();
    members
        .iter()
        .find(|m| m.group() == group && !m.is_copied())
        .and_then(|leader| leader.added())
        == Some(present)
}

/// The flags a member is written with: its own MCREATE and MCACHE, and the
/// order that puts it back where it is.
fn replay_flags(flags: MountFlags, order: Order) -> MountFlags {
    let bits = flags.bits() & (MountFlags::MCREATE | MountFlags::MCACHE);
    // Only MCREATE and MCACHE remain, which MountFlags accepts.
    MountFlags::new(bits)
        .unwrap_or(MountFlags::REPLACE)
        .with_order(order)
}

impl<C: Clone, I: Ord + Clone + core::fmt::Debug> Namespace<C, I> {
    /// The text of /proc/N/ns (proc(3)): one bind or mount command a line,
    /// then `cd dot` if the caller gives the process's current directory.
    pub fn ns_text(&self, dot: Option<&str>) -> String {
        let mut out = String::new();
        for point in self.mount_points() {
            let members = point.members();
            let path = point.path();
            let members: Vec<&Member<C, I>> = members
                .iter()
                .filter(|m| !copied_with_intact_group(members, m))
                .collect();
            let original = members
                .iter()
                .position(|m| matches!(m.source(), Source::Original));
            match original {
                Some(at) => {
                    for member in members[..at].iter().rev().copied() {
                        line(
                            &mut out,
                            member,
                            replay_flags(member.flags(), Order::Before),
                            path,
                        );
                    }
                    for member in members[at + 1..].iter().copied() {
                        line(
                            &mut out,
                            member,
                            replay_flags(member.flags(), Order::After),
                            path,
                        );
                    }
                }
                None => {
                    for (index, member) in members.iter().copied().enumerate() {
                        let order = if index == 0 {
                            Order::Replace
                        } else {
                            Order::After
                        };
                        line(&mut out, member, replay_flags(member.flags(), order), path);
                    }
                }
            }
        }
        if let Some(dot) = dot {
            out.push_str(&format!("cd {}\n", quote(dot)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_ns1() {
        assert_eq!(quote("/dev"), "/dev");
        assert_eq!(quote("#c"), "'#c'");
        assert_eq!(quote("it's"), "'it''s'");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("/srv/ramfs"), "/srv/ramfs");
        assert_eq!(quote_always("/x"), "'/x'");
    }
}
