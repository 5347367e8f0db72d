//! P2P streams over QUIC through the real relay (in this process): many at once with
//! byte-exact content, FIN, resets, a peer lost mid-stream, and the end of the pairing.

use crate::common;

use std::time::Duration;

use common::{
    accept_stream, next, open_stream, random_bytes, read_to_eof, sha256_hex, stream_code, within,
    write_and_finish, Relay,
};
use native_client::wire::ResetCode;
use native_client::{ClientEvent, P2pStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: usize = 1024 * 1024;

/// Writes `out` and reads the other direction at the same time; returns what was read
/// (length, SHA-256).
async fn exchange(stream: P2pStream, out: Vec<u8>) -> ((usize, String), String) {
    let (read, write) = stream.split();
    let (sent, received) = tokio::join!(write_and_finish(write, &out), read_to_eof(read));
    (received.expect("read to EOF"), sent.expect("write"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_streams_of_4_mib_both_ways_arrive_byte_exact() {
    let relay = Relay::start(&[]).await;
    let (a, mut a_in, b, mut b_in) = relay.paired("A", "B").await;

    // Two streams opened by each side, all four open at once, each carrying 4 MiB in each
    // direction at the same time.
    let mut pairs = Vec::new();
    for _ in 0..2 {
        pairs.push(open_stream(&a, &mut b_in).await);
    }
    for _ in 0..2 {
        let (mine, theirs) = open_stream(&b, &mut a_in).await;
        pairs.push((theirs, mine));
    }
    let mut ids: Vec<u64> = pairs.iter().map(|(s, _)| s.id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "distinct stream ids");

    let mut tasks = Vec::new();
    for (n, (a_side, b_side)) in pairs.into_iter().enumerate() {
        let a_data = random_bytes(100 + n as u64, 4 * MIB);
        let b_data = random_bytes(200 + n as u64, 4 * MIB);
        let (a_sha, b_sha) = (sha256_hex(&a_data), sha256_hex(&b_data));
        tasks.push(tokio::spawn(async move {
            let (a_got, b_got) = tokio::join!(exchange(a_side, a_data), exchange(b_side, b_data));
            // What each side sent is what the other read, byte for byte.
            assert_eq!(a_got.1, a_sha);
            assert_eq!(b_got.1, b_sha);
            assert_eq!(b_got.0, (4 * MIB, a_sha), "A -> B on stream {n}");
            assert_eq!(a_got.0, (4 * MIB, b_sha), "B -> A on stream {n}");
        }));
    }
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the transfers finish in time")
            .expect("transfer task");
    }
    // The pairing is intact afterwards.
    assert_eq!(a.target().as_deref(), Some("B"));
    assert_eq!(b.list_clients().await.unwrap(), vec!["A", "B"]);
    relay.shutdown().await;
}

#[tokio::test]
async fn fin_gives_a_clean_eof_and_the_other_direction_goes_on() {
    let relay = Relay::start(&[]).await;
    let (a, _a_in, _b, mut b_in) = relay.paired("A", "B").await;
    let (mine, theirs) = open_stream(&a, &mut b_in).await;
    let (mut my_read, my_write) = mine.split();
    let (mut their_read, mut their_write) = theirs.split();

    let data = random_bytes(7, 300_000);
    let sha = within("write and FIN", write_and_finish(my_write, &data))
        .await
        .unwrap();
    // B reads everything, then a clean EOF (not an error).
    let (len, got) = within("read to EOF", read_to_eof(&mut their_read))
        .await
        .expect("a clean EOF");
    assert_eq!((len, got), (data.len(), sha));
    // Reading again at EOF stays at EOF.
    assert_eq!(their_read.read(&mut [0u8; 16]).await.unwrap(), 0);

    // B -> A still works after A finished its side, in several writes spread in time.
    let back = random_bytes(8, 200_000);
    for chunk in back.chunks(50_000) {
        their_write.write_all(chunk).await.unwrap();
        let mut got = vec![0u8; chunk.len()];
        within("read back", my_read.read_exact(&mut got))
            .await
            .unwrap();
        assert_eq!(&got, chunk);
    }
    their_write.shutdown().await.unwrap();
    let (len, _) = within("read to EOF", read_to_eof(&mut my_read))
        .await
        .expect("a clean EOF on A too");
    assert_eq!(len, 0);
    relay.shutdown().await;
}

#[tokio::test]
async fn an_empty_stream_is_just_eof() {
    let relay = Relay::start(&[]).await;
    let (a, _a_in, _b, mut b_in) = relay.paired("A", "B").await;
    let (mut mine, mut theirs) = open_stream(&a, &mut b_in).await;
    mine.shutdown().await.unwrap();
    theirs.shutdown().await.unwrap();
    let (len, _) = within("EOF", read_to_eof(&mut theirs)).await.unwrap();
    assert_eq!(len, 0);
    let (len, _) = within("EOF", read_to_eof(&mut mine)).await.unwrap();
    assert_eq!(len, 0);
    relay.shutdown().await;
}

#[tokio::test]
async fn a_reset_reaches_the_peer_with_its_code() {
    let relay = Relay::start(&[]).await;
    let (a, _a_in, _b, mut b_in) = relay.paired("A", "B").await;

    for explicit in [true, false] {
        let (mut mine, theirs) = open_stream(&a, &mut b_in).await;
        let (mut their_read, mut their_write) = theirs.split();
        mine.write_all(b"partial").await.unwrap();
        let mut got = [0u8; 7];
        within("partial data", their_read.read_exact(&mut got))
            .await
            .unwrap();
        assert_eq!(&got, b"partial");
        if explicit {
            mine.reset(ResetCode::PeerReset.code());
        } else {
            // Dropped without shutdown: a reset, never a clean EOF.
            drop(mine);
        }
        let err = within("the reset", read_to_eof(&mut their_read))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "stream reset: the peer reset the stream (code 0x11)"
        );
        assert_eq!(stream_code(&err), Some(ResetCode::PeerReset));

        // B's writes toward the abandoned side are stopped, with the same cause (an
        // explicit reset also stops A's reading; a dropped stream's read half is gone).
        let err = within("the stop", async {
            let chunk = vec![0u8; 64 * 1024];
            loop {
                if let Err(e) = their_write.write_all(&chunk).await {
                    break e;
                }
            }
        })
        .await;
        assert_eq!(stream_code(&err), Some(ResetCode::PeerReset), "{err}");
    }
    // The pairing survives resets.
    assert_eq!(a.target().as_deref(), Some("B"));
    let (mut mine, mut theirs) = open_stream(&a, &mut b_in).await;
    mine.write_all(b"again").await.unwrap();
    mine.shutdown().await.unwrap();
    let mut text = String::new();
    within("read", theirs.read_to_string(&mut text))
        .await
        .unwrap();
    assert_eq!(text, "again");
    relay.shutdown().await;
}

#[tokio::test]
async fn a_reset_by_the_acceptor_reaches_the_opener() {
    let relay = Relay::start(&[]).await;
    let (a, _a_in, _b, mut b_in) = relay.paired("A", "B").await;
    let (mut mine, mut theirs) = open_stream(&a, &mut b_in).await;
    theirs.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    within("read", mine.read_exact(&mut one)).await.unwrap();
    theirs.reset(ResetCode::PeerReset.code());
    let err = within("the reset", read_to_eof(&mut mine))
        .await
        .unwrap_err();
    assert_eq!(stream_code(&err), Some(ResetCode::PeerReset));
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_lost_mid_stream_is_an_error_never_an_eof() {
    let relay = Relay::start(&[]).await;
    // Lost two ways: its connection closes, or a newer connection with its id replaces it.
    for (replaced, a_id, b_id) in [(false, "A1", "B1"), (true, "A2", "B2")] {
        let (a, a_in, b, mut b_in) = relay.paired(a_id, b_id).await;
        let (mine, theirs) = open_stream(&a, &mut b_in).await;
        // A writes without end; B reads some, then A's connection goes while A's stream is
        // still open (so nothing on A's side resets or finishes it first).
        let writer = tokio::spawn(async move {
            let mut mine = mine;
            let chunk = random_bytes(9, 64 * 1024);
            while mine.write_all(&chunk).await.is_ok() {}
            mine
        });
        let (mut their_read, _their_write) = theirs.split();
        let mut buf = vec![0u8; MIB];
        within("the first MiB", their_read.read_exact(&mut buf))
            .await
            .unwrap();
        let newer = if replaced {
            Some(relay.connect(a_id).await)
        } else {
            within("close", a.close()).await;
            None
        };
        let err = within("the stream failing", async {
            loop {
                match their_read.read(&mut buf).await {
                    Ok(0) => panic!("a lost peer must not look like a clean EOF"),
                    Ok(_) => continue,
                    Err(e) => break e,
                }
            }
        })
        .await;
        assert_eq!(
            stream_code(&err),
            Some(ResetCode::PeerGone),
            "replaced: {replaced}: {err}"
        );
        assert_eq!(
            err.to_string(),
            "stream reset: the peer's connection was lost (code 0x12)"
        );
        // B is told of the stream and of the peer, and is free again.
        loop {
            match next(&mut b_in).await {
                ClientEvent::PeerDisconnected => break,
                ClientEvent::StreamClosed(_) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(b.target(), None);
        // A's writer fails too, its connection being gone.
        within("the writer failing", writer).await.unwrap();
        drop((a, a_in, b, b_in, newer));
    }
    relay.shutdown().await;
}

#[tokio::test]
async fn the_end_of_the_pairing_resets_its_streams_on_both_ends() {
    let relay = Relay::start(&[]).await;
    let (a, mut a_in, b, mut b_in) = relay.paired("A", "B").await;
    let (mut mine, mut theirs) = open_stream(&a, &mut b_in).await;
    let (mut other_mine, mut other_theirs) = open_stream(&b, &mut a_in).await;
    mine.write_all(b"before").await.unwrap();
    let mut got = [0u8; 6];
    within("read", theirs.read_exact(&mut got)).await.unwrap();

    within("unregister", a.unregister()).await.unwrap();
    // Once the caller's unregister returned, every stream of the pair is reset, on both
    // ends, with the pairing's end as the cause.
    for stream in [&mut mine, &mut theirs, &mut other_mine, &mut other_theirs] {
        let err = within("the reset", read_to_eof(stream)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "stream reset: the pairing ended (code 0x13)"
        );
        assert_eq!(stream_code(&err), Some(ResetCode::Closed));
    }
    let mut ids = vec![mine.id(), other_mine.id()];
    ids.sort();
    for incoming in [&mut a_in, &mut b_in] {
        let (mut closed, mut unregistered) = (Vec::new(), false);
        while closed.len() < 2 || !unregistered {
            match next(incoming).await {
                ClientEvent::Unregistered => unregistered = true,
                ClientEvent::StreamClosed(id) => closed.push(id),
                other => panic!("{other:?}"),
            }
        }
        closed.sort();
        assert_eq!(closed, ids);
    }
    assert_eq!((a.target(), b.target()), (None, None));
    relay.shutdown().await;
}

#[tokio::test]
async fn a_refused_stream_is_none() {
    let relay = Relay::start(&[]).await;
    let (a, _a_in, _b, mut b_in) = relay.paired("A", "B").await;
    for drop_it in [false, true] {
        let opening = tokio::spawn({
            let a = a.clone();
            async move { a.open_stream("B").await }
        });
        match next(&mut b_in).await {
            ClientEvent::StreamRequest(request) if drop_it => drop(request),
            ClientEvent::StreamRequest(request) => request.refuse(),
            other => panic!("{other:?}"),
        }
        assert!(within("open", opening).await.unwrap().unwrap().is_none());
    }
    // A stream to someone else than the peer is the relay's to refuse.
    let (_c, _c_in) = relay.connect("C").await;
    let err = a.open_stream("C").await.unwrap_err();
    assert_eq!(err.to_string(), "request failed: not paired with 'C'");
    relay.shutdown().await;
}

#[tokio::test]
async fn streams_accepted_during_a_burst_all_arrive() {
    // Many small streams opened back to back: each data stream meets its grant, whichever
    // of the two reaches the acceptor first.
    let relay = Relay::start(&[]).await;
    let (a, _a_in, _b, mut b_in) = relay.paired("A", "B").await;
    let opener = tokio::spawn({
        let a = a.clone();
        async move {
            let mut ids = Vec::new();
            for n in 0..20u8 {
                let mut stream = a.open_stream("B").await.unwrap().unwrap();
                stream.write_all(&[n; 100]).await.unwrap();
                stream.shutdown().await.unwrap();
                ids.push(stream.id());
                // Keep the read side open until B has read, so nothing is reset early.
                tokio::spawn(async move {
                    let _ = read_to_eof(&mut stream).await;
                });
            }
            ids
        }
    });
    let mut seen = Vec::new();
    while seen.len() < 20 {
        let mut stream = accept_stream(&mut b_in).await;
        let mut data = Vec::new();
        within("read", stream.read_to_end(&mut data)).await.unwrap();
        assert_eq!(data.len(), 100);
        assert!(data.iter().all(|&x| x == data[0]));
        stream.shutdown().await.unwrap();
        seen.push(stream.id());
    }
    let mut ids = within("opener", opener).await.unwrap();
    ids.sort();
    seen.sort();
    assert_eq!(ids, seen);
    relay.shutdown().await;
}
