//! The client list comes in pages, so that listing costs what one page costs and every
//! reply fits in a frame: at 100,000 clients the whole list (~1.2 MB) would be larger than a
//! client's default frame limit. A page's size is bounded by the longest id, so the bound
//! holds whatever the ids are.

use crate::MAX_CLIENT_ID_BYTES;

/// Most client ids one page may hold (a larger `limit` is answered with this many): at the
/// longest id this stays far under the default control frame limit (tested below). The
/// relay's directory caps every page at it.
pub const MAX_LIST_PAGE: usize = 4096;

/// Most bytes one id takes in a `Clients` reply: its length (a postcard varint, 2 bytes up
/// to 16,383) and the longest id's bytes.
pub const ID_ENTRY_BYTES: usize = 2 + MAX_CLIENT_ID_BYTES;

/// Most bytes a `Clients` reply takes besides its ids: the frame's and the reply's variant
/// indexes, the request id and the id count (varints of at most 10 and 5 bytes), and the
/// `next` cursor (an option tag and one id).
pub const PAGE_OVERHEAD_BYTES: usize = 1 + 10 + 1 + 5 + 1 + ID_ENTRY_BYTES;

/// The largest page whose reply fits in a frame of `frame_limit` bytes at the longest ids,
/// between 1 and [`MAX_LIST_PAGE`]: the `limit` a client asks for.
pub fn page_limit(frame_limit: usize) -> u32 {
    let fits = frame_limit.saturating_sub(PAGE_OVERHEAD_BYTES) / ID_ENTRY_BYTES;
    // MAX_LIST_PAGE is far below u32::MAX.
    fits.clamp(1, MAX_LIST_PAGE) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode, DEFAULT_MAX_FRAME_BYTES};
    use crate::{ServerFrame, WireReply};

    /// A reply of `count` ids of the longest length, each distinct, with a `next` cursor,
    /// as the body length its frame has.
    fn longest_page(count: usize) -> usize {
        let id = |n: usize| {
            let mut id = format!("{n:08}");
            id.push_str(&"é".repeat((MAX_CLIENT_ID_BYTES - id.len()) / 2));
            id.push_str(&"x".repeat(MAX_CLIENT_ID_BYTES - id.len()));
            assert_eq!(id.len(), MAX_CLIENT_ID_BYTES);
            id
        };
        let reply = ServerFrame::Reply {
            req: u64::MAX,
            reply: WireReply::Clients {
                ids: (0..count).map(id).collect(),
                next: Some(id(count)),
            },
        };
        encode(&reply).unwrap().len() - 4
    }

    #[test]
    fn the_largest_page_of_the_longest_ids_fits_the_default_frame() {
        let len = longest_page(MAX_LIST_PAGE);
        assert!(
            len <= DEFAULT_MAX_FRAME_BYTES,
            "{MAX_LIST_PAGE} ids of {MAX_CLIENT_ID_BYTES} bytes take {len} bytes, over the \
             default frame limit of {DEFAULT_MAX_FRAME_BYTES}"
        );
        assert_eq!(page_limit(DEFAULT_MAX_FRAME_BYTES), MAX_LIST_PAGE as u32);
    }

    #[test]
    fn a_page_sized_for_a_frame_limit_fits_it() {
        for limit in [1024, 4096, 65_536, 200_000] {
            let page = page_limit(limit) as usize;
            assert!(page < MAX_LIST_PAGE, "{limit}");
            let len = longest_page(page);
            assert!(len <= limit, "{page} ids take {len} bytes, over {limit}");
        }
        assert_eq!(page_limit(0), 1);
    }
}
