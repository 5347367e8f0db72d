//! `RelayHandle::state`: the counts of what the core holds follow a pairing question from
//! asked to answered, and are all zero once the clients have left.

use std::time::Duration;

use relay_core::{Command, Config, Transport};
use relay_runtime::{CoreState, Outbox, OutboxLimits, RelayHandle};

#[tokio::test]
async fn the_state_counts_what_is_held_and_nothing_after_the_clients_left() {
    let relay = RelayHandle::new(Config::default());
    assert!(relay.state().is_empty(), "{}", relay.state());
    let (a_out, _a_rx) = Outbox::new(OutboxLimits::default());
    let (b_out, _b_rx) = Outbox::new(OutboxLimits::default());
    let a = relay
        .connect(Some("A"), None, Transport::Native, a_out)
        .unwrap();
    let b = relay
        .connect(Some("B"), None, Transport::Legacy, b_out)
        .unwrap();
    // A asks B to pair; B's client has not answered.
    relay.command(
        a,
        Command::Register {
            req: relay_core::ReqId(1),
            target: "B".into(),
        },
    );
    let state = relay.state();
    assert_eq!(
        (
            state.connections,
            state.directory,
            state.requests,
            state.questions
        ),
        (2, 2, 1, 1),
        "{state}"
    );
    assert_eq!(state.streams, 0);

    relay.disconnect(b);
    relay.disconnect(a);
    // Timer tasks end at their next turn on the runtime.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !relay.state().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still held: {}",
            relay.state()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(relay.state(), CoreState::default());
    assert_eq!(
        relay.state().to_string(),
        "connections=0 directory=0 addresses=0 timers=0 requests=0 questions=0 streams=0"
    );
}
