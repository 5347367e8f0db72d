//! `RelayHandle::close_all`: every client is told why, nothing is left behind, and nobody
//! gets in afterwards.

use std::time::Duration;

use relay_core::{CloseReason, Command, Config, ConnectError, Event, ReqId, Transport};
use relay_runtime::{Outbox, OutboxLimits, OutboxReceiver, RelayHandle};

fn drained(rx: &mut OutboxReceiver) -> Vec<Event> {
    std::iter::from_fn(|| rx.try_recv()).collect()
}

#[tokio::test]
async fn close_all_tells_every_client_why_and_refuses_newcomers() {
    let relay = RelayHandle::new(Config::default());
    let (a_out, mut a_rx) = Outbox::new(OutboxLimits::default());
    let (b_out, mut b_rx) = Outbox::new(OutboxLimits::default());
    let a = relay
        .connect(Some("A"), None, Transport::Native, a_out)
        .unwrap();
    relay
        .connect(Some("B"), None, Transport::Legacy, b_out)
        .unwrap();
    // A question B has not answered yet keeps a deadline (and so a timer) armed.
    relay.command(
        a,
        Command::Register {
            req: ReqId(1),
            target: "B".into(),
        },
    );
    drained(&mut a_rx);
    drained(&mut b_rx);

    tokio::time::timeout(
        Duration::from_secs(5),
        relay.close_all(CloseReason::Shutdown),
    )
    .await
    .expect("close_all waits only for the timers it stopped");
    assert!(relay.is_empty());
    assert!(relay.client_ids().is_empty());
    for (name, rx) in [("A", &mut a_rx), ("B", &mut b_rx)] {
        let events = drained(rx);
        let told = events.iter().position(|e| {
            matches!(e, Event::ServerError { message, .. } if message == "the relay is shutting down")
        });
        let closed = events.iter().position(|e| {
            matches!(
                e,
                Event::Close {
                    reason: CloseReason::Shutdown
                }
            )
        });
        assert!(
            matches!((told, closed), (Some(t), Some(c)) if t < c),
            "{name} got {events:?}"
        );
    }

    let (c_out, _c_rx) = Outbox::new(OutboxLimits::default());
    let refused = relay.connect(Some("C"), None, Transport::Native, c_out);
    assert_eq!(refused, Err(ConnectError::ShuttingDown));
    assert!(relay.is_empty());
}
