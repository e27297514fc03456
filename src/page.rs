//! Pagination: page sizes and opaque page tokens.
//!
//! A token says where the next page starts (an offset, or the key of the
//! last item returned, for listings that can seek to it) and which snapshot
//! (`as_of` seq) the first page read, so that appends between pages neither
//! shift nor duplicate results. It is bound to the request's filters by a fingerprint
//! and carries a checksum: a token from another query, or a tampered one, is
//! refused rather than misread.

use crate::error::{Error, Result};

pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;

/// Where a paginated listing resumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub offset: u64,
    pub as_of: u64,
    /// The key of the last item of the previous page (empty: resume at
    /// `offset` instead).
    pub after: Vec<u8>,
}

/// 0 means the default; larger than the maximum is reduced to it.
pub fn page_size(requested: u32) -> usize {
    match requested as usize {
        0 => DEFAULT_PAGE_SIZE,
        size => size.min(MAX_PAGE_SIZE),
    }
}

/// A fingerprint of a request's filters (FNV-1a over the parts).
pub fn fingerprint(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// The longest resume key a token carries.
const MAX_AFTER: usize = 1024;

pub fn encode(cursor: &Cursor, fingerprint: u64) -> String {
    let mut bytes = Vec::with_capacity(28 + cursor.after.len());
    bytes.extend_from_slice(&cursor.offset.to_be_bytes());
    bytes.extend_from_slice(&cursor.as_of.to_be_bytes());
    bytes.extend_from_slice(&fingerprint.to_be_bytes());
    bytes.extend_from_slice(&cursor.after);
    bytes.extend_from_slice(&crc32fast::hash(&bytes).to_be_bytes());
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Reads a token; an empty one is the first page.
pub fn decode(token: &str, fingerprint: u64) -> Result<Option<Cursor>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = |why: &str| Error::invalid("page_token", why.to_string());
    let well_formed = token.len() >= 56
        && token.len().is_multiple_of(2)
        && token.len() <= 2 * (28 + MAX_AFTER)
        && token.bytes().all(|byte| byte.is_ascii_hexdigit());
    if !well_formed {
        return Err(invalid("not a page token of this server"));
    }
    let bytes: Vec<u8> = (0..token.len() / 2)
        .map(|i| u8::from_str_radix(&token[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    let (body, checksum) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(body).to_be_bytes() != checksum {
        return Err(invalid("the page token is damaged"));
    }
    let word = |i: usize| u64::from_be_bytes(body[8 * i..8 * i + 8].try_into().expect("8 bytes"));
    if word(2) != fingerprint {
        return Err(invalid(
            "the page token belongs to a different query; repeat the same filters",
        ));
    }
    Ok(Some(Cursor {
        offset: word(0),
        as_of: word(1),
        after: body[24..].to_vec(),
    }))
}

/// The token of the page after the item keyed `after`, in the same
/// snapshot.
pub fn after(as_of: u64, after: Vec<u8>, fingerprint: u64) -> String {
    if after.len() > MAX_AFTER {
        // A key this long cannot be seeked to; no listing makes one.
        return String::new();
    }
    encode(
        &Cursor {
            offset: 0,
            as_of,
            after,
        },
        fingerprint,
    )
}

/// One page of `items` from `cursor` on, and the token of the next page
/// (empty after the last one).
pub fn slice<T>(items: Vec<T>, cursor: &Cursor, size: usize, fingerprint: u64) -> (Vec<T>, String) {
    let start = (cursor.offset as usize).min(items.len());
    let end = start.saturating_add(size).min(items.len());
    let next = if end < items.len() {
        encode(
            &Cursor {
                offset: end as u64,
                as_of: cursor.as_of,
                after: Vec::new(),
            },
            fingerprint,
        )
    } else {
        String::new()
    };
    let page = items.into_iter().skip(start).take(end - start).collect();
    (page, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_refuse_tampering() {
        let cursor = Cursor {
            offset: 200,
            as_of: 42,
            after: Vec::new(),
        };
        let token = encode(&cursor, 7);
        assert_eq!(decode(&token, 7).unwrap(), Some(cursor));
        let resume = after(42, b"ally\0china\0russia\0\0".to_vec(), 7);
        assert_eq!(
            decode(&resume, 7).unwrap().unwrap().after,
            b"ally\0china\0russia\0\0".to_vec()
        );
        assert!(decode(&resume[..resume.len() - 2], 7).is_err(), "cut short");
        assert!(decode(&token, 8).is_err(), "another query's token");
        let mut tampered = token.clone().into_bytes();
        tampered[10] = if tampered[10] == b'0' { b'1' } else { b'0' };
        assert!(decode(std::str::from_utf8(&tampered).unwrap(), 7).is_err());
        assert!(decode("bogus", 7).is_err());
        assert_eq!(decode("", 7).unwrap(), None);
    }

    #[test]
    fn slices_pages_until_the_end() {
        let items: Vec<u32> = (0..250).collect();
        let first = Cursor {
            offset: 0,
            as_of: 1,
            after: Vec::new(),
        };
        let (page, next) = slice(items.clone(), &first, 100, 9);
        assert_eq!(page.len(), 100);
        let cursor = decode(&next, 9).unwrap().unwrap();
        assert_eq!(
            cursor,
            Cursor {
                offset: 100,
                as_of: 1,
                after: Vec::new(),
            }
        );
        let (page, next) = slice(
            items.clone(),
            &Cursor {
                offset: 200,
                as_of: 1,
                after: Vec::new(),
            },
            100,
            9,
        );
        assert_eq!((page.len(), next.as_str()), (50, ""));
        assert_eq!(page_size(0), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(u32::MAX), MAX_PAGE_SIZE);
    }
}
