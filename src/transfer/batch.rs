//! The batch route's wire format: `POST /chunks` fetches a run of small chunks in one request.
//!
//! Why: a tree of tiny files is otherwise one HTTP request per file, and on loopback the
//! request, not the bytes, is the cost. The planner orders small chunks in batches
//! (`planner::batch`); the peer fetches such an order with one request whose body lists the
//! hashes, and the answer carries every chunk in the order asked:
//!
//! ```text
//! request body : hash(16) x n                 1 <= n <= BATCH_MAX
//! answer body  : entry x n, in request order
//! entry        : 0x00 len:u32le bytes[len]    the chunk as stored
//!              | 0x01 len:u32le bytes[len]    LZ4 block (only if the request accepted lz4)
//!              | 0x02                         not held (or changed on disk) here
//! ```
//!
//! Both decoders bound everything before allocating: the request by its length (a multiple
//! of the hash length, at most [`BATCH_MAX`] hashes), each answer entry by the size the
//! downloader expects for that chunk (from its own validated manifest), so a lying source can
//! neither make it allocate more than the batch nor shift one chunk into another. Decoding
//! checks framing only; the fetcher hashes every chunk before anything uses it
//! (`transport::fetch`), so a corrupt chunk fails alone and the rest of the batch is kept.

use crate::manifest::{ChunkHash, HASH_LEN};

use super::compress::{decompress_exact, max_compressed_len};

/// Route of batch downloads on every node.
pub const BATCH_ROUTE: &str = "/chunks";

/// Most hashes in one batch request (the planner's `BATCH_MAX`, which orders no more).
pub const BATCH_MAX: usize = crate::planner::batch::BATCH_MAX;

/// Largest request body the route reads.
pub const MAX_REQUEST: usize = BATCH_MAX * HASH_LEN;

const RAW: u8 = 0;
const LZ4: u8 = 1;
const MISSING: u8 = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch request of {0} bytes is not 1 to {BATCH_MAX} chunk hashes of {HASH_LEN} bytes")]
    BadRequest(usize),
    #[error("batch answer is cut short at chunk {0}")]
    Truncated(usize),
    #[error("batch answer has an unknown entry tag {tag} at chunk {at}")]
    BadTag { at: usize, tag: u8 },
    #[error("batch answer gives chunk {at} {got} bytes where at most {limit} fit")]
    TooLong { at: usize, got: usize, limit: usize },
    #[error("batch answer has {0} bytes after its last chunk")]
    Trailing(usize),
}

/// The request body for `hashes`.
pub fn encode_request(hashes: &[ChunkHash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

/// The hashes of a request body, refused unless 1 to [`BATCH_MAX`] whole hashes.
pub fn decode_request(body: &[u8]) -> Result<Vec<ChunkHash>, BatchError> {
    if body.is_empty() || !body.len().is_multiple_of(HASH_LEN) || body.len() > MAX_REQUEST {
        return Err(BatchError::BadRequest(body.len()));
    }
    Ok(body
        .chunks_exact(HASH_LEN)
        .map(|c| {
            let mut h = [0u8; HASH_LEN];
            h.copy_from_slice(c);
            ChunkHash(h)
        })
        .collect())
}

/// Append one answer entry: `Some((bytes, compressed))`, or `None` for a chunk not held.
pub fn encode_entry(out: &mut Vec<u8>, entry: Option<(&[u8], bool)>) {
    match entry {
        None => out.push(MISSING),
        Some((data, compressed)) => {
            out.push(if compressed { LZ4 } else { RAW });
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
    }
}

/// Most bytes an honest answer for chunks of `sizes` can take (the downloader's body limit).
pub fn max_answer_len(sizes: &[u64]) -> usize {
    sizes
        .iter()
        .map(|&s| 5 + max_compressed_len(usize::try_from(s).unwrap_or(usize::MAX)))
        .fold(0, usize::saturating_add)
}

/// One decoded entry: the chunk's bytes as sent (unverified), or not held by the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Data(Vec<u8>),
    Missing,
}

/// Split an answer for chunks of `sizes` (in request order) into its entries. A raw entry
/// must be exactly its chunk's size, an LZ4 one at most the bound for it and must decode to
/// exactly that size; an entry that fails the size or decoding is `Err` for that chunk alone
/// (the framing stays intact), a broken framing fails the whole answer.
pub fn decode_answer(body: &[u8], sizes: &[u64]) -> Result<Vec<Result<Entry, String>>, BatchError> {
    let mut out = Vec::with_capacity(sizes.len());
    let mut pos = 0usize;
    for (at, &size) in sizes.iter().enumerate() {
        let tag = *body.get(pos).ok_or(BatchError::Truncated(at))?;
        pos += 1;
        if tag == MISSING {
            out.push(Ok(Entry::Missing));
            continue;
        }
        if tag != RAW && tag != LZ4 {
            return Err(BatchError::BadTag { at, tag });
        }
        let len_bytes: [u8; 4] =
            body.get(pos..pos + 4).and_then(|b| b.try_into().ok()).ok_or(BatchError::Truncated(at))?;
        pos += 4;
        let len = u32::from_le_bytes(len_bytes) as usize;
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        let limit = if tag == LZ4 { max_compressed_len(size) } else { size };
        if len > limit {
            return Err(BatchError::TooLong { at, got: len, limit });
        }
        let data = body.get(pos..pos + len).ok_or(BatchError::Truncated(at))?;
        pos += len;
        out.push(match tag {
            RAW => Ok(Entry::Data(data.to_vec())),
            _ => decompress_exact(data, size).map(Entry::Data),
        });
    }
    if pos != body.len() {
        return Err(BatchError::Trailing(body.len() - pos));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_lengths_are_refused() {
        let hs: Vec<_> = (0..3u8).map(|i| ChunkHash::of(&[i])).collect();
        assert_eq!(decode_request(&encode_request(&hs)).unwrap(), hs);
        for len in [0, 1, HASH_LEN + 1, MAX_REQUEST + HASH_LEN] {
            assert_eq!(decode_request(&vec![0; len]), Err(BatchError::BadRequest(len)));
        }
    }

    #[test]
    fn answers_decode_per_chunk_and_bad_framing_is_refused() {
        let text = vec![b'a'; 5000];
        let lz = crate::transfer::compress::compress_if_worth(&text).expect("repetitive text compresses");
        let mut body = Vec::new();
        encode_entry(&mut body, Some((b"abc", false)));
        encode_entry(&mut body, None);
        encode_entry(&mut body, Some((&lz, true)));
        encode_entry(&mut body, Some((b"xy", false)));
        let got = decode_answer(&body, &[3, 9, 5000, 5]).unwrap();
        assert_eq!(got[0], Ok(Entry::Data(b"abc".to_vec())));
        assert_eq!(got[1], Ok(Entry::Missing));
        assert_eq!(got[2], Ok(Entry::Data(text)));
        assert_eq!(got[3], Ok(Entry::Data(b"xy".to_vec())), "short raw data decodes; its hash check fails it");
        assert!(body.len() <= max_answer_len(&[3, 9, 5000, 5]));
        assert_eq!(decode_answer(&body[..body.len() - 1], &[3, 9, 5000, 2]), Err(BatchError::Truncated(3)));
        let mut extra = body.clone();
        extra.push(0);
        assert_eq!(decode_answer(&extra, &[3, 9, 5000, 2]), Err(BatchError::Trailing(1)));
        assert!(matches!(decode_answer(&body, &[2, 9, 5000, 2]), Err(BatchError::TooLong { at: 0, .. })));
        assert_eq!(decode_answer(&[7], &[1]), Err(BatchError::BadTag { at: 0, tag: 7 }));
    }
}
