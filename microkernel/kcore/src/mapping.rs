//! The mapping database: who mapped which page to whom, for revocation.
//!
//! Each physical frame handed to the root task is the root of a tree whose
//! nodes are `(space, address)` mappings of that frame (L4 X.2, "Mapping":
//! map derives a child, grant moves a node, unmap revokes recursively).
//! Every operation reports the page-table work it implies as a list of
//! [`Change`]s; the kernel applies them in order and flushes the TLB.
//!
//! Invariants:
//! - Every node is indexed under its `(space, address)`, and each pair
//!   names at most one node: a space maps an address to one frame.
//! - A child maps the same frame as its parent with no more rights, so
//!   revoking rights from a node and its descendants keeps that true.
//! - A node with no rights does not exist: revoking the last right removes
//!   the node with its whole subtree.
//! - Root nodes (frames the kernel gave the root task) are removed only by
//!   destroying their space: `unmap` skips them, mapping over one is
//!   refused, and granting one maps it instead, so no frame is ever lost.
//! - Trees are walked with an explicit stack, never by recursion, because a
//!   tree can be as deep as there are mappings and kernel stacks are small.
//! - Granularity is one 4 KiB page; larger flexpages are handled page by
//!   page.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use microkernel_abi::{Error, Fpage, Rights, TaskId, PAGE_SIZE, USER_ADDRESS_END};

use crate::fpage::is_aligned;

/// One page-table update the kernel must make, in the order given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Map `address` in `space` to `frame` with `rights` (a new mapping, or
    /// new rights for an existing one).
    Install {
        /// The address space.
        space: TaskId,
        /// The page's user address.
        address: u64,
        /// The physical frame.
        frame: u64,
        /// The rights the page-table entry gets.
        rights: Rights,
    },
    /// Lower the rights of an existing mapping.
    Restrict {
        /// The address space.
        space: TaskId,
        /// The page's user address.
        address: u64,
        /// The remaining rights (never empty).
        rights: Rights,
    },
    /// Remove a mapping.
    Remove {
        /// The address space.
        space: TaskId,
        /// The page's user address.
        address: u64,
    },
}

/// A mapping as the database records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The address space.
    pub space: TaskId,
    /// The page's user address.
    pub address: u64,
    /// The physical frame.
    pub frame: u64,
    /// Its rights.
    pub rights: Rights,
}

#[derive(Clone, Copy, Debug)]
struct Node {
    mapping: Mapping,
    parent: Option<u32>,
    first_child: Option<u32>,
    next_sibling: Option<u32>,
    previous_sibling: Option<u32>,
}

/// The mapping trees of every frame.
#[derive(Default)]
pub struct MappingDatabase {
    nodes: Vec<Option<Node>>,
    free: Vec<u32>,
    index: BTreeMap<(TaskId, u64), u32>,
}

fn check_page(address: u64) -> Result<(), Error> {
    if is_aligned(address, 12) && address < USER_ADDRESS_END {
        Ok(())
    } else {
        Err(Error::BadAddress)
    }
}

impl MappingDatabase {
    /// An empty database.
    pub fn new() -> Self {
        MappingDatabase::default()
    }

    /// Mappings recorded.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn node(&self, node: u32) -> &Node {
        match self.nodes.get(node as usize) {
            Some(Some(node)) => node,
            // Only indices taken from the database itself reach here.
            _ => panic!("mapping database: dangling node index {node}"),
        }
    }

    fn node_mut(&mut self, node: u32) -> &mut Node {
        match self.nodes.get_mut(node as usize) {
            Some(Some(node)) => node,
            _ => panic!("mapping database: dangling node index {node}"),
        }
    }

    fn find(&self, space: TaskId, address: u64) -> Option<u32> {
        self.index.get(&(space, address)).copied()
    }

    /// The mapping of the page containing `address` in `space`.
    pub fn lookup(&self, space: TaskId, address: u64) -> Option<Mapping> {
        let page = address & !(PAGE_SIZE - 1);
        self.find(space, page).map(|node| self.node(node).mapping)
    }

    /// The mapping a mapping was derived from (`None` for a root).
    pub fn parent(&self, space: TaskId, address: u64) -> Option<Mapping> {
        let node = self.find(space, address)?;
        self.node(node)
            .parent
            .map(|parent| self.node(parent).mapping)
    }

    /// Every mapping of `space` in address order.
    pub fn mappings_of(&self, space: TaskId) -> Vec<Mapping> {
        self.index
            .range((space, 0)..=(space, u64::MAX))
            .map(|(_, &node)| self.node(node).mapping)
            .collect()
    }

    fn allocate(&mut self, node: Node) -> Result<u32, Error> {
        if let Some(free) = self.free.pop() {
            if let Some(slot) = self.nodes.get_mut(free as usize) {
                *slot = Some(node);
                return Ok(free);
            }
        }
        let index = u32::try_from(self.nodes.len()).map_err(|_| Error::OutOfResources)?;
        self.nodes
            .try_reserve(1)
            .map_err(|_| Error::OutOfResources)?;
        self.nodes.push(Some(node));
        Ok(index)
    }

    fn link_child(&mut self, parent: u32, child: u32) {
        let old_first = self.node(parent).first_child;
        {
            let node = self.node_mut(child);
            node.parent = Some(parent);
            node.previous_sibling = None;
            node.next_sibling = old_first;
        }
        if let Some(old_first) = old_first {
            self.node_mut(old_first).previous_sibling = Some(child);
        }
        self.node_mut(parent).first_child = Some(child);
    }

    fn unlink_from_parent(&mut self, node: u32) {
        let Node {
            parent,
            next_sibling,
            previous_sibling,
            ..
        } = *self.node(node);
        match previous_sibling {
            Some(previous) => self.node_mut(previous).next_sibling = next_sibling,
            None => {
                if let Some(parent) = parent {
                    self.node_mut(parent).first_child = next_sibling;
                }
            }
        }
        if let Some(next) = next_sibling {
            self.node_mut(next).previous_sibling = previous_sibling;
        }
        let detached = self.node_mut(node);
        detached.parent = None;
        detached.next_sibling = None;
        detached.previous_sibling = None;
    }

    fn children(&self, node: u32) -> Vec<u32> {
        let mut children = Vec::new();
        let mut cursor = self.node(node).first_child;
        while let Some(child) = cursor {
            children.push(child);
            cursor = self.node(child).next_sibling;
        }
        children
    }

    fn is_ancestor_or_self(&self, candidate: u32, node: u32) -> bool {
        let mut cursor = Some(node);
        while let Some(current) = cursor {
            if current == candidate {
                return true;
            }
            cursor = self.node(current).parent;
        }
        false
    }

    /// Removes `node` and all its descendants, reporting each removal.
    fn remove_subtree(&mut self, node: u32, changes: &mut Vec<Change>) {
        self.unlink_from_parent(node);
        let mut stack = alloc::vec![node];
        while let Some(current) = stack.pop() {
            stack.extend(self.children(current));
            let Node { mapping, .. } = *self.node(current);
            changes.push(Change::Remove {
                space: mapping.space,
                address: mapping.address,
            });
            self.index.remove(&(mapping.space, mapping.address));
            if let Some(slot) = self.nodes.get_mut(current as usize) {
                *slot = None;
            }
            self.free.push(current);
        }
    }

    /// Takes `rights` away from the descendants of `node`, and from `node`
    /// itself if `include_self`. Nodes left with no rights go, with their
    /// subtrees.
    fn revoke(&mut self, node: u32, rights: Rights, include_self: bool, changes: &mut Vec<Change>) {
        let mut stack = if include_self {
            alloc::vec![node]
        } else {
            self.children(node)
        };
        while let Some(current) = stack.pop() {
            let mapping = self.node(current).mapping;
            let remaining = mapping.rights - rights;
            if remaining == mapping.rights {
                // Children hold no more rights than this node, so none of
                // them loses anything either.
                continue;
            }
            if remaining.is_empty() {
                self.remove_subtree(current, changes);
                continue;
            }
            self.node_mut(current).mapping.rights = remaining;
            changes.push(Change::Restrict {
                space: mapping.space,
                address: mapping.address,
                rights: remaining,
            });
            stack.extend(self.children(current));
        }
    }

    /// Records a frame the kernel gives the root task (sigma0's memory):
    /// a new tree root. Fails with [`Error::AlreadyExists`] if the address
    /// is mapped, [`Error::BadAddress`] if it is not a user page address.
    pub fn insert_root(
        &mut self,
        space: TaskId,
        address: u64,
        frame: u64,
        rights: Rights,
        changes: &mut Vec<Change>,
    ) -> Result<(), Error> {
        check_page(address)?;
        if !is_aligned(frame, 12) || rights.is_empty() {
            return Err(Error::InvalidArgument);
        }
        if self.index.contains_key(&(space, address)) {
            return Err(Error::AlreadyExists);
        }
        let mapping = Mapping {
            space,
            address,
            frame,
            rights,
        };
        let node = self.allocate(Node {
            mapping,
            parent: None,
            first_child: None,
            next_sibling: None,
            previous_sibling: None,
        })?;
        self.index.insert((space, address), node);
        changes.push(Change::Install {
            space,
            address,
            frame,
            rights,
        });
        Ok(())
    }

    /// Maps (or grants) one page: `(from_space, from_address)` to
    /// `(to_space, to_address)` with at most `rights`. Returns whether
    /// anything was transferred: not if the source page is unmapped, the
    /// rights come to nothing, or the destination is the source or one of
    /// its ancestors (which replacing would destroy), or a root.
    ///
    /// A mapping already at the destination is replaced (with its
    /// subtree), except that mapping the same frame again from the same
    /// source extends its rights (L4 X.2, "MapItem").
    pub fn map_page(
        &mut self,
        (from_space, from_address): (TaskId, u64),
        (to_space, to_address): (TaskId, u64),
        rights: Rights,
        grant: bool,
        changes: &mut Vec<Change>,
    ) -> Result<bool, Error> {
        check_page(to_address)?;
        let Some(source) = self.find(from_space, from_address) else {
            return Ok(false);
        };
        let source_mapping = self.node(source).mapping;
        let new_rights = source_mapping.rights & rights;
        if new_rights.is_empty() {
            return Ok(false);
        }
        if let Some(existing) = self.find(to_space, to_address) {
            let existing_node = *self.node(existing);
            if existing_node.parent.is_none() || self.is_ancestor_or_self(existing, source) {
                return Ok(false);
            }
            if !grant && existing_node.parent == Some(source) {
                let extended = existing_node.mapping.rights | new_rights;
                self.node_mut(existing).mapping.rights = extended;
                changes.push(Change::Install {
                    space: to_space,
                    address: to_address,
                    frame: source_mapping.frame,
                    rights: extended,
                });
                return Ok(true);
            }
            self.remove_subtree(existing, changes);
        }
        // A root stays with the root task: granting it maps it instead.
        let grant = grant && self.node(source).parent.is_some();
        if grant {
            self.revoke(source, source_mapping.rights - new_rights, false, changes);
            self.index.remove(&(from_space, from_address));
            changes.push(Change::Remove {
                space: from_space,
                address: from_address,
            });
            let node = self.node_mut(source);
            node.mapping.space = to_space;
            node.mapping.address = to_address;
            node.mapping.rights = new_rights;
            self.index.insert((to_space, to_address), source);
        } else {
            let child = self.allocate(Node {
                mapping: Mapping {
                    space: to_space,
                    address: to_address,
                    frame: source_mapping.frame,
                    rights: new_rights,
                },
                parent: None,
                first_child: None,
                next_sibling: None,
                previous_sibling: None,
            })?;
            self.link_child(source, child);
            self.index.insert((to_space, to_address), child);
        }
        changes.push(Change::Install {
            space: to_space,
            address: to_address,
            frame: source_mapping.frame,
            rights: new_rights,
        });
        Ok(true)
    }

    /// Maps or grants every mapped page of `source` (in `from_space`) to
    /// `destination_base` onward in `to_space`, with at most
    /// `source.rights()`. Unmapped source pages are skipped, and so are
    /// destination pages at or above the end of user space. Returns the
    /// pages transferred; fails, before any change, only for a misaligned
    /// or non-user destination base.
    pub fn map_fpage(
        &mut self,
        from_space: TaskId,
        source: Fpage,
        to_space: TaskId,
        destination_base: u64,
        grant: bool,
        changes: &mut Vec<Change>,
    ) -> Result<usize, Error> {
        check_page(destination_base)?;
        if source.is_nil() {
            return Ok(0);
        }
        let addresses: Vec<u64> = self
            .index
            .range((from_space, source.base())..(from_space, source.end()))
            .map(|(&(_, address), _)| address)
            .collect();
        let mut transferred = 0;
        for address in addresses {
            let Some(destination) = destination_base.checked_add(address - source.base()) else {
                continue;
            };
            if destination >= USER_ADDRESS_END {
                continue;
            }
            if self.map_page(
                (from_space, address),
                (to_space, destination),
                source.rights(),
                grant,
                changes,
            )? {
                transferred += 1;
            }
        }
        Ok(transferred)
    }

    /// Revokes `fpage.rights()` from every mapping derived from `space`'s
    /// pages in `fpage`, and from those pages themselves if `include_self`
    /// (root mappings excepted). Returns how many of `space`'s pages were
    /// looked at.
    pub fn unmap(
        &mut self,
        space: TaskId,
        fpage: Fpage,
        include_self: bool,
        changes: &mut Vec<Change>,
    ) -> usize {
        if fpage.is_nil() || fpage.rights().is_empty() {
            return 0;
        }
        let nodes: Vec<u32> = self
            .index
            .range((space, fpage.base())..(space, fpage.end()))
            .map(|(_, &node)| node)
            .collect();
        let count = nodes.len();
        for node in nodes {
            // An earlier revocation in this loop may have removed it (a
            // page of `space` derived from another page of `space`).
            if !matches!(self.nodes.get(node as usize), Some(Some(_))) {
                continue;
            }
            let is_root = self.node(node).parent.is_none();
            self.revoke(node, fpage.rights(), include_self && !is_root, changes);
        }
        count
    }

    /// Removes every mapping of `space`, and every mapping derived from
    /// one of them in any space (the space is being destroyed).
    pub fn destroy_space(&mut self, space: TaskId, changes: &mut Vec<Change>) {
        let nodes: Vec<u32> = self
            .index
            .range((space, 0)..=(space, u64::MAX))
            .map(|(_, &node)| node)
            .collect();
        for node in nodes {
            if matches!(self.nodes.get(node as usize), Some(Some(_))) {
                self.remove_subtree(node, changes);
            }
        }
    }

    /// Checks every invariant of the module documentation; for tests.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        let mut live = 0;
        for (position, slot) in self.nodes.iter().enumerate() {
            let Some(node) = slot else { continue };
            live += 1;
            let index = position as u32;
            let mapping = node.mapping;
            if self.find(mapping.space, mapping.address) != Some(index) {
                return Err("node not indexed under its own space and address");
            }
            if mapping.rights.is_empty() {
                return Err("node without rights");
            }
            if let Some(parent) = node.parent {
                let parent_mapping = self.node(parent).mapping;
                if parent_mapping.frame != mapping.frame {
                    return Err("child maps a different frame");
                }
                if !parent_mapping.rights.contains(mapping.rights) {
                    return Err("child has rights its parent lacks");
                }
                if !self.children(parent).contains(&index) {
                    return Err("child missing from its parent's list");
                }
            }
            for child in self.children(index) {
                if self.node(child).parent != Some(index) {
                    return Err("child list holds a node with another parent");
                }
            }
            let mut steps = 0;
            let mut cursor = node.parent;
            while let Some(ancestor) = cursor {
                steps += 1;
                if steps > self.nodes.len() {
                    return Err("cycle in parent links");
                }
                cursor = self.node(ancestor).parent;
            }
        }
        if live != self.index.len() {
            return Err("index and nodes disagree");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn task(index: u32) -> TaskId {
        TaskId::new(index, 1).unwrap()
    }

    const ROOT: u32 = 0;

    fn database_with_root(pages: u64) -> MappingDatabase {
        let mut database = MappingDatabase::new();
        let mut changes = Vec::new();
        for page in 0..pages {
            let address = 0x10_0000 + page * PAGE_SIZE;
            database
                .insert_root(task(ROOT), address, address, Rights::FULL, &mut changes)
                .unwrap();
        }
        database
    }

    fn map(
        database: &mut MappingDatabase,
        from: (u32, u64),
        to: (u32, u64),
        rights: Rights,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        assert!(database
            .map_page(
                (task(from.0), from.1),
                (task(to.0), to.1),
                rights,
                false,
                &mut changes
            )
            .unwrap());
        database.check_invariants().unwrap();
        changes
    }

    #[test]
    fn root_insertion() {
        let mut database = database_with_root(1);
        let mut changes = Vec::new();
        assert_eq!(
            database.insert_root(task(ROOT), 0x10_0000, 0, Rights::FULL, &mut changes),
            Err(Error::AlreadyExists)
        );
        assert_eq!(
            database.insert_root(task(ROOT), 0x10_0001, 0, Rights::FULL, &mut changes),
            Err(Error::BadAddress)
        );
        assert_eq!(
            database.insert_root(task(ROOT), USER_ADDRESS_END, 0, Rights::FULL, &mut changes),
            Err(Error::BadAddress)
        );
        assert_eq!(
            database.lookup(task(ROOT), 0x10_0ABC).map(|m| m.frame),
            Some(0x10_0000)
        );
        assert!(changes.is_empty());
    }

    #[test]
    fn map_derives_a_child_with_fewer_rights() {
        let mut database = database_with_root(1);
        let changes = map(&mut database, (ROOT, 0x10_0000), (1, 0x4000), Rights::READ);
        assert_eq!(
            changes,
            [Change::Install {
                space: task(1),
                address: 0x4000,
                frame: 0x10_0000,
                rights: Rights::READ
            }]
        );
        assert_eq!(database.parent(task(1), 0x4000).unwrap().space, task(ROOT));
        // Asking for more than the source has yields only what it has.
        map(&mut database, (1, 0x4000), (2, 0x8000), Rights::FULL);
        assert_eq!(
            database.lookup(task(2), 0x8000).unwrap().rights,
            Rights::READ
        );
    }

    #[test]
    fn unmapped_source_or_no_rights_transfers_nothing() {
        let mut database = database_with_root(1);
        let mut changes = Vec::new();
        assert_eq!(
            database.map_page(
                (task(1), 0x1000),
                (task(2), 0x1000),
                Rights::FULL,
                false,
                &mut changes
            ),
            Ok(false)
        );
        assert_eq!(
            database.map_page(
                (task(ROOT), 0x10_0000),
                (task(2), 0x1000),
                Rights::empty(),
                false,
                &mut changes
            ),
            Ok(false)
        );
        assert_eq!(
            database.map_page(
                (task(ROOT), 0x10_0000),
                (task(2), 0x1001),
                Rights::FULL,
                false,
                &mut changes
            ),
            Err(Error::BadAddress)
        );
        assert!(changes.is_empty());
    }

    #[test]
    fn unmap_revokes_recursively() {
        let mut database = database_with_root(1);
        map(&mut database, (ROOT, 0x10_0000), (1, 0x1000), Rights::FULL);
        map(&mut database, (1, 0x1000), (2, 0x2000), Rights::FULL);
        map(&mut database, (2, 0x2000), (3, 0x3000), Rights::READ);
        map(
            &mut database,
            (1, 0x1000),
            (4, 0x4000),
            Rights::READ | Rights::WRITE,
        );
        let mut changes = Vec::new();
        let fpage = Fpage::new(0x1000, 12, Rights::FULL).unwrap();
        assert_eq!(database.unmap(task(1), fpage, false, &mut changes), 1);
        database.check_invariants().unwrap();
        let mut removed: Vec<_> = changes
            .iter()
            .map(|change| match change {
                Change::Remove { space, address } => (space.index(), *address),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        removed.sort();
        assert_eq!(removed, [(2, 0x2000), (3, 0x3000), (4, 0x4000)]);
        assert!(database.lookup(task(1), 0x1000).is_some());
        assert_eq!(database.len(), 2);
    }

    #[test]
    fn unmap_including_self() {
        let mut database = database_with_root(1);
        map(&mut database, (ROOT, 0x10_0000), (1, 0x1000), Rights::FULL);
        map(&mut database, (1, 0x1000), (2, 0x2000), Rights::FULL);
        let mut changes = Vec::new();
        database.unmap(
            task(1),
            Fpage::new(0, 16, Rights::FULL).unwrap(),
            true,
            &mut changes,
        );
        database.check_invariants().unwrap();
        assert_eq!(changes.len(), 2);
        assert!(database.lookup(task(1), 0x1000).is_none());
        assert!(database.lookup(task(2), 0x2000).is_none());
    }

    #[test]
    fn unmap_of_some_rights_restricts() {
        let mut database = database_with_root(1);
        map(&mut database, (ROOT, 0x10_0000), (1, 0x1000), Rights::FULL);
        map(
            &mut database,
            (1, 0x1000),
            (2, 0x2000),
            Rights::READ | Rights::WRITE,
        );
        map(&mut database, (2, 0x2000), (3, 0x3000), Rights::WRITE);
        let mut changes = Vec::new();
        database.unmap(
            task(1),
            Fpage::new(0x1000, 12, Rights::WRITE).unwrap(),
            false,
            &mut changes,
        );
        database.check_invariants().unwrap();
        assert_eq!(
            changes,
            [
                Change::Restrict {
                    space: task(2),
                    address: 0x2000,
                    rights: Rights::READ
                },
                Change::Remove {
                    space: task(3),
                    address: 0x3000
                },
            ]
        );
        assert_eq!(
            database.lookup(task(1), 0x1000).unwrap().rights,
            Rights::FULL
        );
    }

    #[test]
    fn roots_survive_unmap_including_self() {
        let mut database = database_with_root(1);
        map(&mut database, (ROOT, 0x10_0000), (1, 0x1000), Rights::FULL);
        let mut changes = Vec::new();
        database.unmap(
            task(ROOT),
            Fpage::complete(Rights::FULL),
            true,
            &mut changes,
        );
        assert_eq!(
            changes,
            [Change::Remove {
                space: task(1),
                address: 0x1000
            }]
        );
        assert!(database.lookup(task(ROOT), 0x10_0000).is_some());
    }

    #[test]
    fn grant_moves_the_node_and_keeps_its_children() {
        let mut database = database_with_root(1);
        map(&mut database, (ROOT, 0x10_0000), (1, 0x1000), Rights::FULL);
        map(
            &mut database,
            (1, 0x1000),
            (2, 0x2000),
            Rights::READ | Rights::WRITE,
        );
        let mut changes = Vec::new();
        assert!(database
            .map_page(
                (task(1), 0x1000),
                (task(5), 0x5000),
                Rights::READ | Rights::WRITE,
                true,
                &mut changes
            )
            .unwrap());
        database.check_invariants().unwrap();
        assert_eq!(
            changes,
            [
                Change::Remove {
                    space: task(1),
                    address: 0x1000
                },
                Change::Install {
                    space: task(5),
                    address: 0x5000,
                    frame: 0x10_0000,
                    rights: Rights::READ | Rights::WRITE
                },
            ]
        );
        assert!(database.lookup(task(1), 0x1000).is_none());
        assert_eq!(database.parent(task(2), 0x2000).unwrap().space, task(5));
        assert_eq!(database.parent(task(5), 0x5000).unwrap().space, task(ROOT));
    }

    #[test]
    fn grant_with_fewer_rights_restricts_the_children() {
        let mut database = database_with_root(1);
        map(&mut database, (ROOT, 0x10_0000), (1, 0x1000), Rights::FULL);
        map(
            &mut database,
            (1, 0x1000),
            (2, 0x2000),
            Rights::READ | Rights::WRITE,
        );
        let mut changes = Vec::new();
        database
            .map_page(
                (task(1), 0x1000),
                (task(5), 0x5000),
                Rights::READ,
                true,
                &mut changes,
            )
            .unwrap();
        database.check_invariants().unwrap();
        assert_eq!(
            database.lookup(task(2), 0x2000).unwrap().rights,
            Rights::READ
        );
    }

    #[test]
    fn mapping_over_an_existing_mapping_replaces_it() {
        let mut database = database_with_root(2);
        map(&mut database, (ROOT, 0x10_0000), (1, 0x1000), Rights::FULL);
        map(&mut database, (1, 0x1000), (2, 0x2000), Rights::FULL);
        let changes = map(&mut database, (ROOT, 0x10_1000), (1, 0x1000), Rights::READ);
        assert_eq!(
            changes,
            [
                Change::Remove {
                    space: task(1),
                    address: 0x1000
                },
                Change::Remove {
                    space: task(2),
                    address: 0x2000
                },
                Change::Install {
                    space: task(1),
                    address: 0x1000,
                    frame: 0x10_1000,
                    rights: Rights::READ
                },
            ]
        );
    }

    #[test]
    fn mapping_again_from_the_same_source_extends_rights() {
        let mut database = database_with_root(1);
        map(&mut database, (ROOT, 0x10_0000), (1, 0x1000), Rights::READ);
        map(&mut database, (1, 0x1000), (2, 0x2000), Rights::READ);
        let changes = map(&mut database, (ROOT, 0x10_0000), (1, 0x1000), Rights::WRITE);
        assert_eq!(
            changes,
            [Change::Install {
                space: task(1),
                address: 0x1000,
                frame: 0x10_0000,
                rights: Rights::READ | Rights::WRITE
            }]
        );
        assert!(database.lookup(task(2), 0x2000).is_some());
    }

    #[test]
    fn mapping_onto_an_ancestor_is_refused() {
        let mut database = database_with_root(1);
        map(&mut database, (ROOT, 0x10_0000), (1, 0x1000), Rights::FULL);
        let mut changes = Vec::new();
        for grant in [false, true] {
            assert_eq!(
                database.map_page(
                    (task(1), 0x1000),
                    (task(ROOT), 0x10_0000),
                    Rights::FULL,
                    grant,
                    &mut changes
                ),
                Ok(false)
            );
            assert_eq!(
                database.map_page(
                    (task(1), 0x1000),
                    (task(1), 0x1000),
                    Rights::FULL,
                    grant,
                    &mut changes
                ),
                Ok(false)
            );
        }
        assert!(changes.is_empty());
        database.check_invariants().unwrap();
    }

    #[test]
    fn fpage_mapping_skips_holes() {
        let mut database = database_with_root(4);
        let mut changes = Vec::new();
        database.unmap(
            task(ROOT),
            Fpage::complete(Rights::FULL),
            false,
            &mut changes,
        );
        map(
            &mut database,
            (ROOT, 0x10_0000),
            (1, 0x20_0000),
            Rights::FULL,
        );
        map(
            &mut database,
            (ROOT, 0x10_2000),
            (1, 0x20_2000),
            Rights::FULL,
        );
        let source = Fpage::new(0x20_0000, 14, Rights::READ).unwrap();
        let mut changes = Vec::new();
        assert_eq!(
            database.map_fpage(task(1), source, task(2), 0x40_0000, false, &mut changes),
            Ok(2)
        );
        database.check_invariants().unwrap();
        assert_eq!(
            database.lookup(task(2), 0x40_2000).unwrap().frame,
            0x10_2000
        );
        assert!(database.lookup(task(2), 0x40_1000).is_none());
        assert_eq!(
            database.map_fpage(task(1), source, task(2), 0x40_0800, false, &mut changes),
            Err(Error::BadAddress)
        );
    }

    #[test]
    fn fpage_mapping_stops_at_the_end_of_user_space() {
        let mut database = database_with_root(2);
        let source = Fpage::new(0x10_0000, 13, Rights::FULL).unwrap();
        let mut changes = Vec::new();
        let last_page = USER_ADDRESS_END - PAGE_SIZE;
        assert_eq!(
            database.map_fpage(task(ROOT), source, task(1), last_page, false, &mut changes),
            Ok(1)
        );
    }

    #[test]
    fn destroying_a_space_removes_its_subtrees() {
        let mut database = database_with_root(1);
        map(&mut database, (ROOT, 0x10_0000), (1, 0x1000), Rights::FULL);
        map(&mut database, (1, 0x1000), (2, 0x2000), Rights::FULL);
        map(&mut database, (ROOT, 0x10_0000), (3, 0x3000), Rights::FULL);
        let mut changes = Vec::new();
        database.destroy_space(task(1), &mut changes);
        database.check_invariants().unwrap();
        assert_eq!(changes.len(), 2);
        assert!(database.lookup(task(2), 0x2000).is_none());
        assert!(database.lookup(task(3), 0x3000).is_some());
        assert!(database.mappings_of(task(1)).is_empty());
        assert_eq!(database.mappings_of(task(ROOT)).len(), 1);
    }

    #[test]
    fn deep_trees_do_not_recurse() {
        let mut database = database_with_root(1);
        let mut previous = (ROOT, 0x10_0000);
        for space in 1..5000u32 {
            let next = (space, 0x1000);
            let mut changes = Vec::new();
            database
                .map_page(
                    (task(previous.0), previous.1),
                    (task(next.0), next.1),
                    Rights::FULL,
                    false,
                    &mut changes,
                )
                .unwrap();
            previous = next;
        }
        let mut changes = Vec::new();
        database.unmap(
            task(ROOT),
            Fpage::complete(Rights::FULL),
            false,
            &mut changes,
        );
        assert_eq!(changes.len(), 4999);
        assert_eq!(database.len(), 1);
    }

    #[derive(Clone, Debug)]
    enum Operation {
        Map {
            from: (u32, u64),
            to: (u32, u64),
            rights: u64,
            grant: bool,
        },
        Unmap {
            space: u32,
            page: u64,
            rights: u64,
            include_self: bool,
        },
        Destroy {
            space: u32,
        },
    }

    fn operation() -> impl Strategy<Value = Operation> {
        let place = (0u32..4, 0u64..4);
        prop_oneof![
            4 => (place.clone(), place.clone(), 1u64..8, any::<bool>())
                .prop_map(|(from, to, rights, grant)| Operation::Map { from, to, rights, grant }),
            2 => (0u32..4, 0u64..4, 1u64..8, any::<bool>())
                .prop_map(|(space, page, rights, include_self)| Operation::Unmap { space, page, rights, include_self }),
            1 => (1u32..4).prop_map(|space| Operation::Destroy { space }),
        ]
    }

    /// Space 0 holds roots at pages 0..4 (addresses 0x1000 * (page + 1)).
    fn address(page: u64) -> u64 {
        (page + 1) * PAGE_SIZE
    }

    proptest! {
        #[test]
        fn random_operations_keep_the_invariants(operations in proptest::collection::vec(operation(), 1..80)) {
            let mut database = MappingDatabase::new();
            let mut changes = Vec::new();
            for page in 0..4 {
                database.insert_root(task(0), address(page), 0x100_0000 + page * PAGE_SIZE, Rights::FULL, &mut changes).unwrap();
            }
            for operation in operations {
                let before = database.len();
                let mut changes = Vec::new();
                match operation {
                    Operation::Map { from, to, rights, grant } => {
                        database.map_page(
                            (task(from.0), address(from.1)),
                            (task(to.0), address(to.1)),
                            Rights::from_bits_truncate(rights),
                            grant,
                            &mut changes,
                        ).unwrap();
                    }
                    Operation::Unmap { space, page, rights, include_self } => {
                        let fpage = Fpage::new(address(page), 12, Rights::from_bits_truncate(rights)).unwrap();
                        database.unmap(task(space), fpage, include_self, &mut changes);
                    }
                    Operation::Destroy { space } => database.destroy_space(task(space), &mut changes),
                }
                prop_assert_eq!(database.check_invariants(), Ok(()));
                // Roots never disappear.
                for page in 0..4 {
                    prop_assert!(database.lookup(task(0), address(page)).is_some());
                }
                // The changes account for the difference in size.
                let installs = changes.iter().filter(|c| matches!(c, Change::Install { .. })).count();
                let removes = changes.iter().filter(|c| matches!(c, Change::Remove { .. })).count();
                prop_assert!(before + installs >= removes);
                prop_assert!(database.len() <= before + installs);
                prop_assert!(database.len() + removes >= before);
            }
        }
    }
}
