//! The concurrent driver keeps the rules' promises when many threads drive many pairs:
//! every delivery reaches the peer in order, every request is answered exactly once,
//! and a disconnect in the middle of traffic leaves nothing waiting.

use std::collections::HashMap;
use std::sync::Mutex as StdMutex;
use std::time::Duration;

use relay_core::rmpv::Value;
use relay_core::{Answer, Config, Payload, Reply, ReqId};

use super::*;
use crate::sink::Sink;

/// Records what a connection was told; answers nothing itself.
#[derive(Default)]
struct Recorder {
    events: StdMutex<Vec<Event>>,
}

impl Sink for Recorder {
    fn send(&self, event: Event) -> Result<(), Refused> {
        self.events.lock().unwrap().push(event);
        Ok(())
    }
}

impl Recorder {
    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut self.events.lock().unwrap())
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn seq_of(event: &Event) -> Option<u64> {
    match event {
        Event::Deliver { args, .. } => match args.clone().into_values().ok()?.first()? {
            Value::Integer(n) => n.as_u64(),
            _ => None,
        },
        _ => None,
    }
}

fn pair(handle: &RelayHandle, a: &str, b: &str) -> (ConnId, ConnId, Arc<Recorder>, Arc<Recorder>) {
    let (ra, rb) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let ca = handle
        .connect(Some(a), None, Transport::Native, ra.clone())
        .unwrap();
    let cb = handle
        .connect(Some(b), None, Transport::Legacy, rb.clone())
        .unwrap();
    handle.command(
        ca,
        Command::Register {
            req: ReqId(0),
            target: b.into(),
        },
    );
    let ticket = rb
        .take()
        .into_iter()
        .find_map(|e| match e {
            Event::RegisterRequest { ticket, .. } => Some(ticket),
            _ => None,
        })
        .expect("a pairing request");
    handle.command(
        cb,
        Command::Answer {
            ticket,
            answer: Answer::Accept(true),
        },
    );
    assert!(matches!(
        ra.take().as_slice(),
        [Event::Reply {
            reply: Reply::Registered(true),
            ..
        }]
    ));
    (ca, cb, ra, rb)
}

#[test]
fn many_threads_many_pairs_keep_order_and_answer_everything() {
    let rt = runtime();
    let _guard = rt.enter();
    // Every emit may be waiting for its ack at once: the limit must not refuse them.
    let config = Config {
        max_pending_per_connection: 10_000,
        rate: relay_core::RateLimits::OFF,
        ..Config::default()
    };
    let handle = RelayHandle::new(config);
    const PAIRS: usize = 8;
    const EMITS: u64 = 2_000;
    let pairs: Vec<_> = (0..PAIRS)
        .map(|i| pair(&handle, &format!("a{i}"), &format!("b{i}")))
        .collect();
    std::thread::scope(|scope| {
        for (a, b, _, rb) in &pairs {
            let handle = handle.clone();
            let (a, b, rb) = (*a, *b, rb.clone());
            // The sender emits with acks; the receiver's thread answers what it got.
            scope.spawn({
                let handle = handle.clone();
                move || {
                    for n in 0..EMITS {
                        let command = Command::Emit {
                            target: format!("b{}", a.0 / 2),
                            event: "e".into(),
                            args: Payload::Values(vec![Value::from(n)]),
                            ack: Some(ReqId(n + 1)),
                        };
                        handle.command(a, command);
                    }
                }
            });
            scope.spawn(move || {
                let mut seen = 0;
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut log: Vec<u64> = Vec::new();
                while seen < EMITS && Instant::now() < deadline {
                    let events = rb.take();
                    if events.is_empty() {
                        std::thread::yield_now();
                    }
                    for event in events {
                        if let Some(n) = seq_of(&event) {
                            log.push(n);
                            seen += 1;
                            if let Event::Deliver {
                                ticket: Some(t), ..
                            } = event
                            {
                                let answer = Answer::Ack(Payload::Values(vec![Value::from(n)]));
                                handle.command(b, Command::Answer { ticket: t, answer });
                            }
                        }
                    }
                }
                assert_eq!(log, (0..EMITS).collect::<Vec<_>>(), "order of b{}", b.0 / 2);
            });
        }
    });
    // Every ack reply reached its sender exactly once, with the receiver's answer.
    for (a, _, ra, _) in &pairs {
        let mut replies: HashMap<u64, u64> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while replies.len() < EMITS as usize && Instant::now() < deadline {
            for event in ra.take() {
                match event {
                    Event::Reply {
                        req,
                        reply: Reply::Ack(args),
                    } => {
                        let n = match args.into_values().unwrap()[0] {
                            Value::Integer(n) => n.as_u64().unwrap(),
                            _ => panic!("ack without its number"),
                        };
                        assert!(
                            replies.insert(req.0, n).is_none(),
                            "second reply to {req:?}"
                        );
                    }
                    other => panic!("{a:?} got {other:?}"),
                }
            }
            std::thread::yield_now();
        }
        assert_eq!(replies.len(), EMITS as usize);
        assert!(replies.iter().all(|(req, n)| *req == n + 1));
    }
}

#[test]
fn a_disconnect_amid_traffic_answers_every_request() {
    let rt = runtime();
    let _guard = rt.enter();
    let handle = RelayHandle::new(Config::default());
    let (a, b, ra, rb) = pair(&handle, "A", "B");
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for n in 0..500u64 {
                handle.command(
                    a,
                    Command::Emit {
                        target: "B".into(),
                        event: "e".into(),
                        args: Payload::Values(vec![Value::from(n)]),
                        ack: Some(ReqId(n)),
                    },
                );
            }
        });
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(1));
            handle.disconnect(b);
        });
    });
    let _ = rb.take();
    let mut answered = std::collections::HashSet::new();
    let mut disconnected = 0;
    for event in ra.take() {
        match event {
            Event::Reply { req, .. } => assert!(answered.insert(req), "{req:?} twice"),
            Event::PeerDisconnected => disconnected += 1,
            Event::ServerError { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // The 500 requests were either answered before B left (none here, B never acked),
    // failed as B left, or refused as not paired afterwards: each exactly once.
    assert_eq!(answered.len(), 500);
    assert_eq!(disconnected, 1);
    assert!(handle.peer_of("A").is_none());
    assert_eq!(
        handle.client_ids(),
        vec![relay_core::ClientId::new("A").unwrap()]
    );
}

/// A cluster link that carries nothing: it records what this node hands it.
#[derive(Default)]
struct RecordingLink {
    sent: StdMutex<Vec<Transmit>>,
}

impl crate::cluster::ClusterLink for RecordingLink {
    fn node(&self) -> NodeId {
        NodeId(1)
    }

    fn claim(
        &self,
        _client: &ClientId,
        _addr: Addr,
        _policy: relay_core::DuplicatePolicy,
        _max_clients: usize,
    ) -> crate::cluster::ClaimFuture<'_> {
        Box::pin(async { Ok(relay_core::Claimed::Fresh) })
    }

    fn release(&self, _client: &ClientId, _addr: Addr) {}

    fn query(&self, _conn: ConnId, _query: Query) {}

    fn send(&self, transmit: Transmit) -> Result<(), Transmit> {
        self.sent.lock().unwrap().push(transmit);
        Ok(())
    }
}

#[test]
fn a_message_from_another_node_for_a_connection_gone_here_is_answered_on_its_behalf() {
    // The runtime's own routing of the switchboard's bounce rule (the two-node tests check
    // it on the deterministic driver): the sender on the other node is told Gone, and a
    // Gone or a Close for a connection gone here is not answered at all.
    let rt = runtime();
    let _guard = rt.enter();
    let handle = RelayHandle::new(Config::default());
    let link = Arc::new(RecordingLink::default());
    handle.join_cluster(link.clone()).unwrap();
    let remote = Addr::new(NodeId(2), ConnId(5));
    let gone_here = Addr::new(NodeId(1), ConnId(42));
    let register = PeerMsg::Register {
        q: relay_core::QuestionId(1),
        client: ClientId::new("A").unwrap(),
        transport: Transport::Native,
    };
    handle.from_link(Transmit {
        from: remote,
        to: gone_here,
        msg: register,
    });
    assert_eq!(
        *link.sent.lock().unwrap(),
        vec![Transmit {
            from: gone_here,
            to: remote,
            msg: PeerMsg::Gone
        }]
    );
    for msg in [
        PeerMsg::Gone,
        PeerMsg::Close {
            reason: relay_core::CloseReason::Shutdown,
        },
    ] {
        handle.from_link(Transmit {
            from: remote,
            to: gone_here,
            msg,
        });
    }
    assert_eq!(link.sent.lock().unwrap().len(), 1);
}
