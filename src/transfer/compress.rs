//! LZ4 block compression of chunks in flight, only when it pays.
//!
//! Media and archives dominate big distributions and do not compress; compressing them would
//! burn CPU for nothing. So a 64 KiB sample from the middle of the chunk is compressed first
//! and the whole chunk only if the sample shrank below 90 %; the result is used only if the
//! whole chunk shrank below 95 %. Decompression is bounded by the chunk size from the manifest,
//! so a hostile source cannot make a node allocate more than the chunk it asked for.

const SAMPLE: usize = 64 * 1024;

/// LZ4-compress `data` if that saves at least 5 %, else `None`.
pub fn compress_if_worth(data: &[u8]) -> Option<Vec<u8>> {
    if data.len() < 4096 {
        return None;
    }
    if data.len() > 4 * SAMPLE {
        let mid = data.len() / 2 - SAMPLE / 2;
        let sample = &data[mid..mid + SAMPLE];
        if lz4_flex::block::compress(sample).len() * 10 > SAMPLE * 9 {
            return None;
        }
    }
    let out = lz4_flex::block::compress(data);
    (out.len() * 100 < data.len() * 95).then_some(out)
}

/// Worst-case compressed size of a chunk of `size` bytes: anything larger is not valid LZ4 of it.
pub fn max_compressed_len(size: usize) -> usize {
    lz4_flex::block::get_maximum_output_size(size)
}

/// Decompress a block that must expand to exactly `size` bytes.
pub fn decompress_exact(data: &[u8], size: usize) -> Result<Vec<u8>, String> {
    let out = lz4_flex::block::decompress(data, size).map_err(|e| format!("invalid LZ4 data: {e}"))?;
    if out.len() != size {
        return Err(format!("LZ4 data expands to {} bytes, expected {size}", out.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_round_trips_and_random_is_skipped() {
        let text: Vec<u8> = (0..1_000_000u32).map(|i| b"lanscatter "[(i % 11) as usize]).collect();
        let c = compress_if_worth(&text).expect("text compresses");
        assert!(c.len() < text.len() / 2);
        assert_eq!(decompress_exact(&c, text.len()).unwrap(), text);
        assert!(decompress_exact(&c, text.len() - 1).is_err());
        let mut x = 0x1234_5678_u64;
        let random: Vec<u8> = (0..1_000_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(compress_if_worth(&random).is_none());
        assert!(decompress_exact(&random[..1000], 5000).is_err());
    }
}
