//! The native client list, paged: the relay answers one page at a time (never the whole
//! directory), the client walks the pages, and every id comes exactly once, sorted. Against
//! the real relay in this process.

use crate::common;

use std::time::{Duration, Instant};

use common::{raw_client_config, within, Relay};
use futures::stream::{self, StreamExt, TryStreamExt};
use native_client::wire::{self, frame, ClientFrame, FrameReader, FrameWriter, ServerFrame};
use native_client::{Client, ListPage};

/// Ids that sort differently from the order they connect in: numbers of two widths, upper
/// and lower case, and non-ASCII.
fn ids(count: usize) -> Vec<String> {
    (0..count)
        .map(|n| match n % 4 {
            0 => format!("c{n}"),
            1 => format!("C-{n:03}"),
            2 => format!("é{n}"),
            _ => format!("{n}z"),
        })
        .rev()
        .collect()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

#[tokio::test]
async fn a_small_page_size_walks_every_id_exactly_once_in_order() {
    let relay = Relay::start(&["--list-page", "7"]).await;
    let names = ids(30);
    let mut clients = Vec::new();
    for id in &names {
        clients.push(relay.connect(id).await);
    }
    let (lister, _lister_in) = relay.connect("lister").await;
    let mut expected = names.clone();
    expected.push("lister".into());
    let expected = sorted(expected);

    // The whole list, walked page by page.
    assert_eq!(lister.list_clients().await.unwrap(), expected);

    // The same walk by hand: pages of the relay's size, each after the last one's cursor.
    let mut pages: Vec<ListPage> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = lister.list_page(after.as_deref(), None).await.unwrap();
        assert!(page.ids.len() <= 7, "{page:?}");
        after = page.next.clone();
        let last = page.next.is_none();
        pages.push(page);
        if last {
            break;
        }
        assert!(pages.len() < 10, "the walk does not end: {pages:?}");
    }
    assert_eq!(pages.len(), expected.len().div_ceil(7), "{pages:?}");
    for page in &pages[..pages.len() - 1] {
        assert_eq!(page.ids.len(), 7);
        assert_eq!(
            page.next.as_ref(),
            page.ids.last(),
            "next is the page's last id"
        );
    }
    let walked: Vec<String> = pages.into_iter().flat_map(|p| p.ids).collect();
    assert_eq!(walked, expected);

    // A size of the client's own, from anywhere in the list.
    let page = lister.list_page(Some(&expected[2]), Some(3)).await.unwrap();
    assert_eq!(page.ids, expected[3..6]);
    assert_eq!(page.next.as_deref(), Some(expected[5].as_str()));
    // A cursor need not be a connected id; past the end is an empty last page.
    let page = lister.list_page(Some("C-0"), Some(2)).await.unwrap();
    assert_eq!(page.ids, ["C-001", "C-005"]);
    let end = lister.list_page(Some("\u{10FFFF}"), None).await.unwrap();
    assert_eq!(end, ListPage::default());

    // Disconnected clients leave the list.
    drop(clients.split_off(10));
    let left = within("the list shrinking", async {
        loop {
            let ids = lister.list_clients().await.unwrap();
            if ids.len() == 11 {
                break ids;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let mut still: Vec<String> = names[..10].to_vec();
    still.push("lister".into());
    assert_eq!(left, sorted(still));
    relay.shutdown().await;
}

#[tokio::test]
async fn a_raw_list_is_always_a_bounded_page() {
    let relay = Relay::start(&["--list-page", "2"]).await;
    let (_a, _a_in) = relay.connect("a").await;
    let (_b, _b_in) = relay.connect("b").await;
    let mut raw = relay.raw("c").await;
    for (limit, ids, next) in [
        // No size: the relay's page.
        (None, vec!["a", "b"], Some("b")),
        // Zero still makes progress: one id.
        (Some(0), vec!["a"], Some("a")),
        // More than there are: everything, and no next page.
        (Some(u32::MAX), vec!["a", "b", "c"], None),
    ] {
        raw.send(&ClientFrame::List {
            req: 9,
            after: None,
            limit,
        })
        .await;
        match raw.next().await {
            ServerFrame::Reply {
                req: 9,
                reply: wire::WireReply::Clients { ids: got, next: n },
            } => {
                assert_eq!(got, ids, "{limit:?}");
                assert_eq!(n.as_deref(), next, "{limit:?}");
            }
            other => panic!("{limit:?}: {other:?}"),
        }
    }
    relay.shutdown().await;
}

/// A connection that has said hello, from a shared endpoint (one UDP socket for all).
struct Connected {
    _conn: quinn::Connection,
    _control: (
        FrameWriter<quinn::SendStream>,
        FrameReader<quinn::RecvStream>,
    ),
}

async fn hello(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    relay: &Relay,
    id: String,
) -> Result<Connected, String> {
    let conn = endpoint
        .connect_with(config, relay.addr(), "localhost")
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let (send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let (mut writer, mut reader) = (
        FrameWriter::new(send),
        FrameReader::new(recv, wire::DEFAULT_MAX_FRAME_BYTES),
    );
    writer
        .send(&ClientFrame::Hello {
            version: wire::PROTOCOL_VERSION,
            client_id: id.clone(),
            credentials: None,
        })
        .await
        .map_err(|e| e.to_string())?;
    let body = reader
        .next()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no welcome")?;
    match frame::decode::<ServerFrame>(&body).map_err(|e| e.to_string())? {
        ServerFrame::Welcome { .. } => Ok(Connected {
            _conn: conn,
            _control: (writer, reader),
        }),
        other => Err(format!("{id}: expected a welcome, got {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_clients_list_in_pages_of_the_default_size() {
    const CLIENTS: usize = 2_500;
    // Thousands of clients from one address, on the defaults.
    let relay = Relay::start(&[]).await;
    let endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).expect("a client endpoint");
    let config = raw_client_config(relay.ca(), wire::ALPN);
    let names = ids(CLIENTS);
    let started = Instant::now();
    let connected: Vec<Connected> = tokio::time::timeout(
        Duration::from_secs(120),
        stream::iter(names.clone())
            .map(|id| hello(&endpoint, config.clone(), &relay, id))
            .buffer_unordered(32)
            .try_collect(),
    )
    .await
    .expect("connecting the clients in time")
    .expect("every client connects");
    eprintln!("{CLIENTS} clients connected in {:?}", started.elapsed());

    let (lister, _lister_in): (Client, _) = relay.connect("lister").await;
    let mut expected = names;
    expected.push("lister".into());
    let expected = sorted(expected);
    // Pages of the relay's default size (1000): three of them.
    let first = lister.list_page(None, None).await.unwrap();
    assert_eq!(first.ids.len(), relay_core::directory::DEFAULT_LIST_PAGE);
    assert_eq!(first.ids, expected[..1000]);
    let all = within("listing every client", lister.list_clients())
        .await
        .unwrap();
    assert_eq!(all.len(), CLIENTS + 1);
    assert_eq!(all, expected);
    drop(connected);
    relay.shutdown().await;
}
