//! Which form of a manifest each peer is sent: the change from the one it holds, or all of it.
//!
//! The coordinator remembers, per peer connection, the id of the last manifest it sent there
//! (messages on one connection arrive and are applied in order, so that is the peer's base by
//! the time the next one lands). A peer holding the previous manifest gets the delta the
//! indexer built once for everyone ([`ManifestState::delta`]); a peer holding the current one
//! (a proxy clearing its "more files follow") gets an empty delta; anyone else, the full
//! encoding. Both are shared `Arc`s: queuing a manifest to a thousand peers copies nothing.

use std::sync::Arc;

use super::ManifestState;
use crate::manifest::delta::Delta;
use crate::protocol::MasterMsg;

/// The message that brings a peer holding manifest `sent` to `cur`.
pub fn manifest_msg(cur: &ManifestState, sent: Option<u64>) -> MasterMsg {
    let (id, hash) = (cur.id, cur.hash);
    if sent == Some(cur.id) {
        let m = &cur.manifest;
        let same = Delta {
            removed_files: Vec::new(),
            files: Vec::new(),
            removed_dirs: Vec::new(),
            dirs: Vec::new(),
            chunk_rule: m.chunk_rule,
            warnings: m.warnings.clone(),
        };
        return MasterMsg::ManifestDelta { id, base: id, hash, delta: Arc::new(same.to_bytes()) };
    }
    match &cur.delta {
        Some((base, delta)) if sent == Some(*base) => {
            MasterMsg::ManifestDelta { id, base: *base, hash, delta: delta.clone() }
        }
        _ => MasterMsg::Manifest { id, bytes: cur.bytes.clone() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ChunkRule, Manifest};

    fn decoded(cur: &ManifestState, base: &Manifest, sent: Option<u64>) -> Manifest {
        match manifest_msg(cur, sent) {
            MasterMsg::Manifest { bytes, .. } => Manifest::from_bytes(&bytes).unwrap(),
            MasterMsg::ManifestDelta { delta, hash, .. } => {
                let m = Delta::from_bytes(&delta).unwrap().apply(base).unwrap();
                assert_eq!(crate::manifest::delta::manifest_hash(&m.to_bytes()), hash);
                m
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn holders_of_the_previous_manifest_get_the_delta_others_all_of_it() {
        let mut one = Manifest::empty(ChunkRule::Auto);
        one.dirs.push(crate::manifest::DirEntry { path: "a".into() });
        let first = ManifestState::after(None, 1, one.clone());
        let mut two = one.clone();
        two.dirs.push(crate::manifest::DirEntry { path: "b".into() });
        let second = ManifestState::after(Some(&first), 2, two.clone());
        assert!(matches!(manifest_msg(&second, Some(1)), MasterMsg::ManifestDelta { base: 1, .. }));
        assert!(matches!(manifest_msg(&second, None), MasterMsg::Manifest { .. }));
        assert!(matches!(manifest_msg(&second, Some(7)), MasterMsg::Manifest { .. }));
        assert!(matches!(manifest_msg(&second, Some(2)), MasterMsg::ManifestDelta { base: 2, .. }));
        assert_eq!(decoded(&second, &one, Some(1)), two);
        assert_eq!(decoded(&second, &two, Some(2)), two);
        assert_eq!(decoded(&second, &one, None), two);
    }
}
