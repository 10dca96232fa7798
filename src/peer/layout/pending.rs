//! The places of a layout still waiting for a chunk's bytes: (file index, offset), per chunk of
//! the layout's `unique` list.
//!
//! Nearly every chunk has exactly one place, so the first place of each lives in a flat vec
//! indexed like `unique` and only further places (duplicate content) in a map. A map by hash of
//! vecs cost ~85 bytes a chunk, the biggest item of a small-file peer's preparation peak
//! (hash table and its doubling, plus a four-slot vec per chunk); this costs ~12.

use std::collections::HashMap;

/// `first` of a chunk with no place waiting.
const NONE: (u32, u64) = (u32::MAX, 0);

#[derive(Debug, Default)]
pub(super) struct Pending {
    /// The first waiting place of each chunk, or [`NONE`].
    first: Vec<(u32, u64)>,
    /// The other waiting places of chunks with more than one.
    more: HashMap<u32, Vec<(u32, u64)>>,
}

impl Pending {
    /// Nothing waiting, for a layout of `chunks` unique chunks.
    pub fn new(chunks: usize) -> Self {
        Pending { first: vec![NONE; chunks], more: HashMap::new() }
    }

    /// Place (`fi`, `off`) waits for chunk `u`.
    pub fn push(&mut self, u: usize, fi: usize, off: u64) {
        // A manifest off the wire is bounded far below 2^32 files.
        let place = (fi as u32, off);
        let Some(first) = self.first.get_mut(u) else { return };
        if *first == NONE {
            *first = place;
        } else {
            self.more.entry(u as u32).or_default().push(place);
        }
    }

    /// Every place waiting for chunk `u`, which then has none.
    pub fn take(&mut self, u: usize) -> Vec<(usize, u64)> {
        let Some(first) = self.first.get_mut(u) else { return Vec::new() };
        if *first == NONE {
            return Vec::new();
        }
        let mut out = vec![(first.0 as usize, first.1)];
        *first = NONE;
        if let Some(more) = self.more.remove(&(u as u32)) {
            out.extend(more.into_iter().map(|(fi, off)| (fi as usize, off)));
        }
        out
    }

    /// The chunks some place waits for, in `unique` order.
    pub fn waiting(&self) -> impl Iterator<Item = usize> + '_ {
        self.first.iter().enumerate().filter(|(_, &p)| p != NONE).map(|(u, _)| u)
    }

    /// No place of file `fi` waits any more (it cannot be written in this layout).
    pub fn forget_file(&mut self, fi: usize) {
        let fi = fi as u32;
        let ids: Vec<usize> = self.waiting().collect();
        for u in ids {
            let places: Vec<(usize, u64)> = self.take(u).into_iter().filter(|&(f, _)| f as u32 != fi).collect();
            for (f, off) in places {
                self.push(u, f, off);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_come_back_in_order_and_only_once() {
        let mut p = Pending::new(3);
        p.push(1, 7, 0);
        p.push(1, 8, 4096);
        p.push(1, 9, 0);
        p.push(2, 7, 8192);
        p.push(5, 1, 0); // outside the layout: ignored
        assert_eq!(p.waiting().collect::<Vec<_>>(), [1, 2]);
        p.forget_file(8);
        assert_eq!(p.take(1), [(7, 0), (9, 0)]);
        assert!(p.take(1).is_empty());
        p.forget_file(7);
        assert_eq!(p.waiting().count(), 0);
        p.push(1, 3, 0);
        assert_eq!(p.take(1), [(3, 0)]);
    }
}
