//! A manifest in verifiable pieces, so that it can travel through the swarm like data instead
//! of from the master to every peer (issue 19 part 4: a 1 M-file manifest is ~64 MB; sent whole
//! to 1000 joining peers that is 64 GB out of the master).
//!
//! Owned by the coordinator work (helper "coord"), not by the rest of `manifest`: it only
//! splits and checks opaque `Manifest::to_bytes` output and never looks inside it.
//!
//! # What this module provides (built and tested)
//! - [`ManifestHeader`]: what the master sends instead of the bytes: the manifest's id, its
//!   encoded length, the piece size, one BLAKE2b hash per piece and the hash of the whole
//!   (`delta::manifest_hash`, the one deltas are already checked against). About 3 KB for a
//!   64 MB manifest at 1 MiB pieces. [`ManifestHeader::validate`] bounds every number in it
//!   before anything is allocated from it.
//! - [`Assembly`]: a peer collecting pieces from anyone: each piece is checked against its hash
//!   on arrival (a wrong one is refused and names its index, so the source can be blamed), and
//!   the whole against the header's hash at the end. Nothing unverified is ever returned.
//! - [`piece`]: the bytes a holder serves for a piece index.
//!
//! # How it is meant to be wired (the design; not wired yet, see /work/notes/coord.md)
//! 1. Protocol 6: `MasterMsg::ManifestHeader(ManifestHeader)` replaces `Manifest` for a peer
//!    without a base for a delta; deltas stay as they are (O(change)). A
//!    `MasterMsg::ManifestFrom { id, url }` names where to fetch the pieces (`None`: the
//!    master), a `PeerMsg::ManifestHeld { id }` says "verified, and serving it now",
//!    `PeerMsg::ManifestFailed { id, bad_piece }` asks for another source.
//! 2. Transport: a `GET /manifest/<id>/<piece>` route beside `/chunk/<hash>` on every node, on
//!    the same authenticated listener and upload-slot semaphore (a small hook in
//!    `transfer::server`), served from the bytes the node holds in memory (the master's
//!    `ManifestState::bytes`; a peer keeps the encoding it decoded or rebuilt from a delta,
//!    which it already computes to check the delta's hash).
//! 3. The coordinator keeps, for the current manifest, the holders (peers that sent
//!    `ManifestHeld`) with a fan-out budget each (e.g. 4 fetchers at a time) and the master
//!    with a budget of 2: a joining peer waits for a free holder; every finished fetcher
//!    becomes a holder, so the copies double about every piece-time and 1000 peers need
//!    ~log2(1000) = 10 rounds. The master's upload is its 2 direct fetchers plus the
//!    fallbacks: under 3 manifest sizes for any swarm size, as issue 19 asks. A failed or lying
//!    source is reported with `ManifestFailed`, loses its holder status for that manifest, and
//!    the fetcher is given another holder (the master last).
//! 4. Old peers: the protocol version changes, so an old peer gets the usual version refusal.
use crate::manifest::ChunkHash;

use serde::{Deserialize, Serialize};

/// Piece size the master uses: a piece is one HTTP response, large enough that a 64 MB
/// manifest is 64 requests, small enough that a bad source costs little.
pub const PIECE_SIZE: u32 = 1 << 20;

/// The largest manifest this accepts (the control channel's own frame bound).
pub const MAX_LEN: u64 = crate::protocol::MAX_FRAME as u64;

/// Smallest piece size a header may name (keeps the piece list short for any length).
pub const MIN_PIECE: u32 = 64 << 10;

/// What a peer needs to fetch and check a manifest from anyone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestHeader {
    pub id: u64,
    /// Length of the encoded manifest.
    pub len: u64,
    pub piece_size: u32,
    /// BLAKE2b of each piece, in order.
    pub pieces: Vec<ChunkHash>,
    /// BLAKE2b of the whole encoding (`delta::manifest_hash`).
    pub hash: ChunkHash,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShareError {
    #[error("a manifest of {0} bytes is over the {MAX_LEN} byte limit")]
    TooLarge(u64),
    #[error("a piece size of {0} bytes is outside {MIN_PIECE}..={PIECE_SIZE}")]
    PieceSize(u32),
    #[error("{got} piece hashes for {len} bytes in pieces of {piece_size} (want {want})")]
    PieceCount { got: usize, want: u64, len: u64, piece_size: u32 },
    #[error("piece {0} is not in this manifest")]
    NoSuchPiece(usize),
    #[error("piece {0} does not match its hash; fetch it from another source")]
    BadPiece(usize),
    #[error("pieces still missing: {0}")]
    Incomplete(usize),
    #[error("the assembled manifest does not match the master's hash")]
    BadWhole,
}

impl ManifestHeader {
    /// The header of manifest `id` encoded as `bytes`, in pieces of `piece_size`.
    pub fn of(id: u64, bytes: &[u8], piece_size: u32) -> Self {
        let pieces = bytes.chunks(piece_size.max(1) as usize).map(ChunkHash::of).collect();
        ManifestHeader {
            id,
            len: bytes.len() as u64,
            piece_size,
            pieces,
            hash: crate::manifest::delta::manifest_hash(bytes),
        }
    }

    /// Every number checked against the others and the limits, before anything is allocated.
    pub fn validate(&self) -> Result<(), ShareError> {
        if self.len > MAX_LEN {
            return Err(ShareError::TooLarge(self.len));
        }
        if !(MIN_PIECE..=PIECE_SIZE).contains(&self.piece_size) {
            return Err(ShareError::PieceSize(self.piece_size));
        }
        let want = self.len.div_ceil(u64::from(self.piece_size));
        if self.pieces.len() as u64 != want {
            let (got, len, piece_size) = (self.pieces.len(), self.len, self.piece_size);
            return Err(ShareError::PieceCount { got, want, len, piece_size });
        }
        Ok(())
    }

    /// Byte range of piece `i` in the encoding.
    pub fn range(&self, i: usize) -> Option<std::ops::Range<usize>> {
        (i < self.pieces.len()).then(|| {
            let start = i as u64 * u64::from(self.piece_size);
            let end = (start + u64::from(self.piece_size)).min(self.len);
            start as usize..end as usize
        })
    }
}

/// Piece `i` of `bytes` as `header` cuts it (what a holder serves).
pub fn piece<'a>(bytes: &'a [u8], header: &ManifestHeader, i: usize) -> Option<&'a [u8]> {
    header.range(i).and_then(|r| bytes.get(r))
}

/// A manifest being collected piece by piece, from any sources.
#[derive(Debug)]
pub struct Assembly {
    header: ManifestHeader,
    buf: Vec<u8>,
    have: Vec<bool>,
    missing: usize,
}

impl Assembly {
    /// Start collecting `header`'s manifest (validated first: the buffer it allocates is
    /// bounded by [`MAX_LEN`]).
    pub fn new(header: ManifestHeader) -> Result<Self, ShareError> {
        header.validate()?;
        let n = header.pieces.len();
        Ok(Assembly { buf: vec![0; header.len as usize], have: vec![false; n], missing: n, header })
    }

    pub fn header(&self) -> &ManifestHeader {
        &self.header
    }

    /// Pieces not yet verified, in order.
    pub fn missing(&self) -> impl Iterator<Item = usize> + '_ {
        self.have.iter().enumerate().filter(|(_, h)| !**h).map(|(i, _)| i)
    }

    pub fn is_complete(&self) -> bool {
        self.missing == 0
    }

    /// Piece `i` as a source sent it: kept only if it matches its hash.
    pub fn add(&mut self, i: usize, data: &[u8]) -> Result<(), ShareError> {
        let range = self.header.range(i).ok_or(ShareError::NoSuchPiece(i))?;
        if data.len() != range.len() || ChunkHash::of(data) != self.header.pieces[i] {
            return Err(ShareError::BadPiece(i));
        }
        if !self.have[i] {
            self.buf[range].copy_from_slice(data);
            self.have[i] = true;
            self.missing -= 1;
        }
        Ok(())
    }

    /// The whole encoding, once every piece is in and the whole matches the header's hash
    /// (pieces that each match cannot disagree with it unless the header lies; checked anyway).
    pub fn finish(self) -> Result<Vec<u8>, ShareError> {
        if self.missing > 0 {
            return Err(ShareError::Incomplete(self.missing));
        }
        if crate::manifest::delta::manifest_hash(&self.buf) != self.header.hash {
            return Err(ShareError::BadWhole);
        }
        Ok(self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn pieces_from_anywhere_in_any_order_make_the_manifest_and_a_bad_one_is_named() {
        for len in [0usize, 1, MIN_PIECE as usize, MIN_PIECE as usize * 3 + 5] {
            let b = bytes(len);
            let h = ManifestHeader::of(4, &b, MIN_PIECE);
            assert_eq!(h.validate(), Ok(()));
            let mut a = Assembly::new(h.clone()).unwrap();
            let mut order: Vec<usize> = a.missing().collect();
            order.reverse();
            for i in order {
                let mut lie = piece(&b, &h, i).unwrap().to_vec();
                lie[0] ^= 1;
                assert_eq!(a.add(i, &lie), Err(ShareError::BadPiece(i)), "a flipped bit is refused");
                assert_eq!(a.add(i, &lie[1..]), Err(ShareError::BadPiece(i)), "a short piece is refused");
                a.add(i, piece(&b, &h, i).unwrap()).unwrap();
            }
            assert!(a.is_complete());
            assert_eq!(a.add(h.pieces.len(), b"x"), Err(ShareError::NoSuchPiece(h.pieces.len())));
            assert_eq!(a.finish().unwrap(), b, "{len}");
        }
    }

    #[test]
    fn a_header_that_does_not_add_up_is_refused_before_any_allocation() {
        let b = bytes(200_000);
        let good = ManifestHeader::of(1, &b, MIN_PIECE);
        let huge = ManifestHeader { len: MAX_LEN + 1, ..good.clone() };
        assert_eq!(Assembly::new(huge).unwrap_err(), ShareError::TooLarge(MAX_LEN + 1));
        let tiny = ManifestHeader { piece_size: 1, ..good.clone() };
        assert_eq!(tiny.validate(), Err(ShareError::PieceSize(1)));
        let mut short = good.clone();
        short.pieces.pop();
        assert!(matches!(short.validate(), Err(ShareError::PieceCount { want: 4, got: 3, .. })));
        let a = Assembly::new(good.clone()).unwrap();
        assert_eq!(a.finish().unwrap_err(), ShareError::Incomplete(4));
        // Pieces that match a header whose whole hash lies: still not returned.
        let mut liar = good;
        liar.hash = ChunkHash::of(b"something else");
        let mut a = Assembly::new(liar.clone()).unwrap();
        for i in 0..4 {
            a.add(i, piece(&b, &liar, i).unwrap()).unwrap();
        }
        assert_eq!(a.finish().unwrap_err(), ShareError::BadWhole);
    }

    #[test]
    fn a_million_file_manifest_has_a_small_header() {
        let h = ManifestHeader {
            id: 1,
            len: 64 << 20,
            piece_size: PIECE_SIZE,
            pieces: vec![ChunkHash::of(b"p"); 64],
            hash: ChunkHash::of(b"w"),
        };
        assert_eq!(h.validate(), Ok(()));
        assert!(crate::protocol::encode(&h).len() < 4096);
    }
}
