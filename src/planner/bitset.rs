//! Fixed-width bit sets over dense chunk indices.
//!
//! The planner keeps one "has" and one "incoming" set per node. Set algebra on whole words
//! (`src & !dst & !incoming & manifest`) is what keeps a source/destination check at
//! O(chunks / 64) instead of O(chunks) hash lookups.

/// A growable bit set; bits past `len` are always zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    pub fn with_len(bits: usize) -> Self {
        BitSet { words: vec![0; bits.div_ceil(64)] }
    }

    /// Grow to hold at least `bits` bits (never shrinks).
    pub fn grow(&mut self, bits: usize) {
        let w = bits.div_ceil(64);
        if w > self.words.len() {
            self.words.resize(w, 0);
        }
    }

    #[inline]
    pub fn get(&self, i: u32) -> bool {
        let i = i as usize;
        self.words.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Set bit `i`, growing as needed; returns true if it was previously clear.
    #[inline]
    pub fn insert(&mut self, i: u32) -> bool {
        let i = i as usize;
        self.grow(i + 1);
        let w = &mut self.words[i / 64];
        let m = 1u64 << (i % 64);
        let was = *w & m != 0;
        *w |= m;
        !was
    }

    /// Clear bit `i`; returns true if it was previously set.
    #[inline]
    pub fn remove(&mut self, i: u32) -> bool {
        let i = i as usize;
        match self.words.get_mut(i / 64) {
            Some(w) => {
                let m = 1u64 << (i % 64);
                let was = *w & m != 0;
                *w &= !m;
                was
            }
            None => false,
        }
    }

    pub fn clear_all(&mut self) {
        self.words.iter_mut().for_each(|w| *w = 0);
    }

    #[inline]
    pub fn word(&self, w: usize) -> u64 {
        self.words.get(w).copied().unwrap_or(0)
    }

    pub fn word_len(&self) -> usize {
        self.words.len()
    }

    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Number of bits set in both `self` and `other`.
    pub fn count_and(&self, other: &BitSet) -> usize {
        self.words.iter().zip(&other.words).map(|(a, b)| (a & b).count_ones() as usize).sum()
    }

    /// Indices of set bits, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| BitIter { w, base: wi as u32 * 64 })
    }

    /// First set bit at or after `from`, wrapping around once; None if empty.
    pub fn next_from(&self, from: u32) -> Option<u32> {
        let n = self.words.len();
        if n == 0 {
            return None;
        }
        let start_w = (from as usize / 64) % n;
        let first = self.words[start_w] & (!0u64 << (from % 64));
        if first != 0 {
            return Some(start_w as u32 * 64 + first.trailing_zeros());
        }
        for k in 1..=n {
            let wi = (start_w + k) % n;
            let w = self.words[wi];
            if w != 0 {
                return Some(wi as u32 * 64 + w.trailing_zeros());
            }
        }
        None
    }
}

/// Iterator over the set bits of one word.
pub struct BitIter {
    pub w: u64,
    pub base: u32,
}

impl Iterator for BitIter {
    type Item = u32;
    #[inline]
    fn next(&mut self) -> Option<u32> {
        if self.w == 0 {
            return None;
        }
        let b = self.w.trailing_zeros();
        self.w &= self.w - 1;
        Some(self.base + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_iter_wrap() {
        let mut b = BitSet::with_len(10);
        assert!(b.insert(3));
        assert!(!b.insert(3));
        assert!(b.insert(130)); // grows
        assert!(b.get(130) && b.get(3) && !b.get(4));
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![3, 130]);
        assert_eq!(b.next_from(4), Some(130));
        assert_eq!(b.next_from(131), Some(3)); // wraps
        assert!(b.remove(3) && !b.remove(3));
        assert_eq!(b.count(), 1);
        assert!(!b.remove(100_000));
    }
}
