//! SPDY/3 header blocks: name/value pairs, zlib-compressed with the SPDY/3
//! dictionary in one compression context per direction for the whole session.

use super::dictionary::SPDY3_DICTIONARY;
use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// A decompressed header block larger than this is refused (a zlib bomb).
pub const MAX_HEADER_BLOCK: usize = 64 * 1024;

/// Why a header block could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The zlib stream is corrupt or asks for another dictionary.
    #[error("SPDY header block: zlib: {0}")]
    Zlib(String),
    /// Decompressed, it is larger than [`MAX_HEADER_BLOCK`].
    #[error("SPDY header block: larger than {MAX_HEADER_BLOCK} bytes")]
    TooLarge,
    /// The name/value structure is truncated or inconsistent.
    #[error("SPDY header block: malformed ({0})")]
    Malformed(&'static str),
}

/// Header names and values; names are lower case, repeated values of one
/// name are separate entries.
pub type Headers = Vec<(String, String)>;

/// The first value of `name` in `headers`.
pub fn get<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Compresses header blocks for one direction of a session.
///
/// # Examples
///
/// ```
/// use cri_streaming::spdy::header_block::{Decoder, Encoder};
///
/// let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
/// for _ in 0..2 {
///     let block = enc.encode(&[("streamtype".into(), "stdout".into())]).unwrap();
///     assert_eq!(dec.decode(&block).unwrap()[0].1, "stdout");
/// }
/// ```
pub struct Encoder {
    zlib: Compress,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Encoder")
    }
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    /// A fresh compression context primed with the SPDY/3 dictionary.
    pub fn new() -> Encoder {
        let mut zlib = Compress::new(Compression::default(), true);
        // Setting a dictionary on a fresh stream only fails for a bad level.
        let _ = zlib.set_dictionary(SPDY3_DICTIONARY);
        Encoder { zlib }
    }

    /// Serializes and compresses `headers` (names lower-cased).
    pub fn encode(&mut self, headers: &[(String, String)]) -> Result<Bytes, HeaderError> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            raw.extend_from_slice(&(name.len() as u32).to_be_bytes());
            raw.extend_from_slice(name.as_bytes());
            raw.extend_from_slice(&(value.len() as u32).to_be_bytes());
            raw.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(256);
            let before_in = self.zlib.total_in();
            self.zlib
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| HeaderError::Zlib(e.to_string()))?;
            let consumed = (self.zlib.total_in() - before_in) as usize;
            input = &input[consumed..];
            // Done once all input is in and the flush left room to spare.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        Ok(Bytes::from(out))
    }
}

/// Decompresses header blocks for one direction of a session.
pub struct Decoder {
    zlib: Decompress,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Decoder")
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A fresh decompression context.
    pub fn new() -> Decoder {
        Decoder {
            zlib: Decompress::new(true),
        }
    }

    /// Decompresses and parses one block.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, HeaderError> {
        let mut out: Vec<u8> = Vec::with_capacity(1024);
        let mut input = block;
        let mut dictionary_set = false;
        loop {
            if out.len() == out.capacity() {
                if out.capacity() >= MAX_HEADER_BLOCK {
                    return Err(HeaderError::TooLarge);
                }
                out.reserve(out.capacity());
            }
            let before_in = self.zlib.total_in();
            let before_out = out.len();
            match self
                .zlib
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(_) if !dictionary_set => {
                        self.zlib
                            .set_dictionary(SPDY3_DICTIONARY)
                            .map_err(|e| HeaderError::Zlib(e.to_string()))?;
                        dictionary_set = true;
                    }
                    _ => return Err(HeaderError::Zlib(e.to_string())),
                },
            }
            let consumed = (self.zlib.total_in() - before_in) as usize;
            input = &input[consumed..];
            let progressed = consumed > 0 || out.len() > before_out;
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            if !progressed && !dictionary_set {
                return Err(HeaderError::Zlib("no progress".into()));
            }
            if !progressed && input.is_empty() {
                break;
            }
        }
        if out.len() > MAX_HEADER_BLOCK {
            return Err(HeaderError::TooLarge);
        }
        parse_pairs(&out)
    }
}

/// Parses the decompressed name/value structure.
fn parse_pairs(raw: &[u8]) -> Result<Headers, HeaderError> {
    fn take<'a>(raw: &mut &'a [u8], n: usize) -> Result<&'a [u8], HeaderError> {
        if raw.len() < n {
            return Err(HeaderError::Malformed("truncated"));
        }
        let (head, rest) = raw.split_at(n);
        *raw = rest;
        Ok(head)
    }
    fn len(raw: &mut &[u8]) -> Result<usize, HeaderError> {
        let b = take(raw, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    let mut raw = raw;
    let count = len(&mut raw)?;
    let mut headers = Vec::new();
    for _ in 0..count {
        let n = len(&mut raw)?;
        let name = take(&mut raw, n)?;
        if name.is_empty() {
            return Err(HeaderError::Malformed("empty name"));
        }
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let n = len(&mut raw)?;
        let value = take(&mut raw, n)?;
        for v in value.split(|b| *b == 0) {
            headers.push((name.clone(), String::from_utf8_lossy(v).into_owned()));
        }
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(SPDY3_DICTIONARY.len(), 1423);
        assert!(SPDY3_DICTIONARY.ends_with(b",enq=0."));
    }

    #[test]
    fn garbage_and_bombs_are_errors() {
        let mut dec = Decoder::new();
        assert!(dec.decode(b"\x00\x01\x02garbage").is_err());
        let block = Encoder::new().encode(&[]).unwrap();
        assert_eq!(Decoder::new().decode(&block).unwrap(), Vec::new());
        let big = vec![("x".to_string(), "y".repeat(MAX_HEADER_BLOCK))];
        let block = Encoder::new().encode(&big).unwrap();
        assert_eq!(Decoder::new().decode(&block), Err(HeaderError::TooLarge));
    }

    proptest! {
        #[test]
        fn blocks_round_trip_across_a_session(
            blocks in proptest::collection::vec(
                proptest::collection::vec(("[a-z-]{1,12}", "[ -~]{0,40}"), 0..6), 1..5)
        ) {
            let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
            for headers in blocks {
                let block = enc.encode(&headers).unwrap();
                prop_assert_eq!(dec.decode(&block).unwrap(), headers);
            }
        }

        #[test]
        fn decoding_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Decoder::new().decode(&data);
        }
    }
}
