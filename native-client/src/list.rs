//! The client list, page by page. The relay answers a list one page at a time (a listing
//! costs what a page costs, and every reply fits in a frame); [`crate::Client::list_clients`]
//! walks the pages with [`Walk`], which also checks that the relay's pages move forward,
//! so a broken relay cannot make the walk repeat ids or never end.

use crate::error::ClientError;

/// Most pages [`crate::Client::list_clients`] fetches for one listing. At the default
/// frame limit a page holds 4096 ids, so this is millions of clients; a client with a tiny
/// frame limit (small pages) walks long lists itself with [`crate::Client::list_page`].
pub const MAX_LIST_PAGES: usize = 4096;

/// One page of the client list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    /// Connected client ids, sorted.
    pub ids: Vec<String>,
    /// Where the next page starts: pass it as `after`. None on the last page.
    pub next: Option<String>,
}

/// The pages of one listing, gathered in order.
#[derive(Debug, Default)]
pub(crate) struct Walk {
    ids: Vec<String>,
    after: Option<String>,
    pages: usize,
}

impl Walk {
    /// Where the next page starts.
    pub(crate) fn after(&self) -> Option<&str> {
        self.after.as_deref()
    }

    /// Adds the next page; `Ok(true)` while more pages follow. Ids must come sorted and
    /// after the cursor, and the cursor must move forward: then every id is listed once.
    pub(crate) fn add(&mut self, page: ListPage) -> Result<bool, ClientError> {
        self.pages += 1;
        let mut last = self.after.as_deref();
        for id in &page.ids {
            if let Some(last) = last.filter(|last| id.as_str() <= *last) {
                return Err(ClientError::Protocol(format!(
                    "the relay's client list is out of order: '{id}' after '{last}'"
                )));
            }
            last = Some(id);
        }
        let Some(next) = page.next else {
            self.ids.extend(page.ids);
            return Ok(false);
        };
        if self.after.as_ref().is_some_and(|after| next <= *after) {
            return Err(ClientError::Protocol(format!(
                "the relay's client list did not move past '{next}'"
            )));
        }
        if self.pages >= MAX_LIST_PAGES {
            return Err(ClientError::ListTooLong {
                pages: MAX_LIST_PAGES,
            });
        }
        self.ids.extend(page.ids);
        self.after = Some(next);
        Ok(true)
    }

    pub(crate) fn into_ids(self) -> Vec<String> {
        self.ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn page(ids: &[&str], next: Option<&str>) -> ListPage {
        ListPage {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            next: next.map(str::to_string),
        }
    }

    #[test]
    fn pages_are_joined_in_order() {
        let mut walk = Walk::default();
        assert_eq!(walk.after(), None);
        assert!(walk.add(page(&["a", "b"], Some("b"))).unwrap());
        assert_eq!(walk.after(), Some("b"));
        assert!(walk.add(page(&["c"], Some("c"))).unwrap());
        assert!(!walk.add(page(&["d"], None)).unwrap());
        assert_eq!(walk.into_ids(), ["a", "b", "c", "d"]);
    }

    #[test]
    fn a_relay_that_repeats_itself_is_caught() {
        let mut walk = Walk::default();
        walk.add(page(&["a", "b"], Some("b"))).unwrap();
        let err = walk.add(page(&["b", "c"], Some("c"))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");

        let mut walk = Walk::default();
        walk.add(page(&["a", "b"], Some("b"))).unwrap();
        let err = walk.add(page(&[], Some("b"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the relay broke the protocol: the relay's client list did not move past 'b'"
        );

        let mut walk = Walk::default();
        let err = walk.add(page(&["b", "a"], None)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    }

    #[test]
    fn an_endless_list_stops_at_the_page_bound() {
        let mut walk = Walk::default();
        let mut n = 0u64;
        let err = loop {
            n += 1;
            let id = format!("{n:012}");
            match walk.add(page(&[&id], Some(&id))) {
                Ok(true) => {}
                Ok(false) => panic!("the page said there is more"),
                Err(e) => break e,
            }
        };
        assert_eq!(n as usize, MAX_LIST_PAGES);
        assert_eq!(err.kind(), ErrorKind::LimitReached);
    }
}
