//! Does the cost of one connection's operations follow that connection's own work, or the
//! size of the whole relay?
//!
//! A relay holds N other connections, paired among themselves, each with 2 emits awaiting
//! an ack and one granted stream per pair. With the core alone (no transport, no lock):
//!
//! - `scale/disconnect/N`: the disconnect of one connection that is paired, has 2 pending
//!   acks each way and 1 stream, plus draining the events it produced;
//! - `scale/unpair/N`: an unregister of such a pair, plus draining its events.
//!
//! The victim is rebuilt before every timed call, outside the timed part. Ideally both
//! figures are the same at N = 100 and N = 100,000; a figure that grows with N means the
//! operation visits state of connections it has nothing to do with.
//!
//! Only the public `Relay` API is used (connect, handle, disconnect, poll_event), so the
//! bench runs unchanged against a rewritten core with the same API.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use relay_core::rmpv::Value;
use relay_core::{
    Answer, Command, Config, ConnId, Event, Outgoing, Payload, Relay, ReqId, Ticket, Transport,
};

/// Sizes of the crowd of other connections.
const SIZES: [usize; 2] = [100, 100_000];
/// Emits with an ack, never answered, that each connection keeps waiting.
const PENDING_ACKS: usize = 2;

fn config() -> Config {
    Config {
        max_clients: 300_000,
        rate: relay_core::RateLimits::OFF,
        ..Default::default()
    }
}

/// Moves every queued event into `into` (cleared first).
fn drain(relay: &mut Relay, into: &mut Vec<Outgoing>) {
    into.clear();
    while let Some(out) = relay.poll_event() {
        into.push(out);
    }
}

/// Drains the queue and returns the ticket of the question put to `asked`.
fn question_to(relay: &mut Relay, asked: ConnId) -> Ticket {
    let mut ticket = None;
    while let Some(out) = relay.poll_event() {
        let t = match out.event {
            Event::RegisterRequest { ticket, .. }
            | Event::StreamRequest { ticket, .. }
            | Event::Deliver {
                ticket: Some(ticket),
                ..
            } => ticket,
            _ => continue,
        };
        if out.conn == asked {
            ticket = Some(t);
        }
    }
    ticket.expect("no question to the target")
}

/// Two connections of one pairing, with the clientIds the commands address them by.
struct Pair {
    a: ConnId,
    b: ConnId,
    a_id: String,
    b_id: String,
}

impl Pair {
    fn connect(relay: &mut Relay, now: Instant, name: &str) -> Self {
        let (a_id, b_id) = (format!("{name}-a"), format!("{name}-b"));
        let a = relay
            .connect(now, Some(&a_id), None, Transport::Native)
            .expect("connect");
        let b = relay
            .connect(now, Some(&b_id), None, Transport::Native)
            .expect("connect");
        Pair { a, b, a_id, b_id }
    }

    /// `a` asks to pair with `b`, which accepts.
    fn pair(&self, relay: &mut Relay, now: Instant) {
        let register = Command::Register {
            req: ReqId(0),
            target: self.b_id.clone(),
        };
        relay.handle(now, self.a, register);
        let ticket = question_to(relay, self.b);
        let accept = Command::Answer {
            ticket,
            answer: Answer::Accept(true),
        };
        relay.handle(now, self.b, accept);
        while relay.poll_event().is_some() {}
    }

    /// Each end sends `PENDING_ACKS` emits with an ack; returns the tickets (answer them
    /// with [`answer_acks`] to settle them).
    fn emit_pending(&self, relay: &mut Relay, now: Instant) -> Vec<(ConnId, Ticket)> {
        let mut tickets = Vec::new();
        for (from, to, to_id) in [(self.a, self.b, &self.b_id), (self.b, self.a, &self.a_id)] {
            for i in 0..PENDING_ACKS {
                let emit = Command::Emit {
                    target: to_id.clone(),
                    event: "e".into(),
                    args: Payload::Values(vec![Value::from("hello")]),
                    ack: Some(ReqId(i as u64)),
                };
                relay.handle(now, from, emit);
                tickets.push((to, question_to(relay, to)));
            }
        }
        tickets
    }

    /// `a` opens a stream, which `b` accepts.
    fn open_stream(&self, relay: &mut Relay, now: Instant) {
        let open = Command::OpenStream {
            req: ReqId(0),
            target: self.b_id.clone(),
        };
        relay.handle(now, self.a, open);
        let ticket = question_to(relay, self.b);
        let accept = Command::Answer {
            ticket,
            answer: Answer::Accept(true),
        };
        relay.handle(now, self.b, accept);
        while relay.poll_event().is_some() {}
    }

    /// Paired, with pending acks both ways and one stream.
    fn arm(&self, relay: &mut Relay, now: Instant) -> Vec<(ConnId, Ticket)> {
        self.pair(relay, now);
        let tickets = self.emit_pending(relay, now);
        self.open_stream(relay, now);
        tickets
    }
}

/// Settles acks left waiting (answers to tickets already settled are ignored).
fn answer_acks(relay: &mut Relay, now: Instant, tickets: Vec<(ConnId, Ticket)>) {
    for (conn, ticket) in tickets {
        let answer = Answer::Ack(Payload::empty());
        relay.handle(now, conn, Command::Answer { ticket, answer });
    }
    while relay.poll_event().is_some() {}
}

/// A relay with `n` other connections, armed in pairs. `now` never moves and the timeout
/// is never fired, so nothing expires.
fn crowd(now: Instant, n: usize) -> Relay {
    let mut relay = Relay::new(config());
    for i in 0..n / 2 {
        Pair::connect(&mut relay, now, &format!("crowd{i}")).arm(&mut relay, now);
    }
    relay
}

fn scale(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale");
    for n in SIZES {
        let now = Instant::now();
        let built = Instant::now();
        let mut relay = crowd(now, n);
        eprintln!("scale: crowd of {n} built in {:?}", built.elapsed());
        let mut events = Vec::new();

        group.bench_function(BenchmarkId::new("disconnect", n), |bench| {
            // The partner stays; the victim reconnects under the same clientId each time.
            let mut victim = Pair::connect(&mut relay, now, "victim");
            relay.disconnect(now, victim.a);
            bench.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    victim.a = relay
                        .connect(now, Some(&victim.a_id), None, Transport::Native)
                        .expect("connect");
                    victim.arm(&mut relay, now);
                    let start = Instant::now();
                    relay.disconnect(now, victim.a);
                    drain(&mut relay, &mut events);
                    spent += start.elapsed();
                    let told = events.iter().any(|out| {
                        out.conn == victim.b && matches!(out.event, Event::PeerDisconnected)
                    });
                    assert!(told, "the partner was not told");
                }
                spent
            });
            relay.disconnect(now, victim.b);
            while relay.poll_event().is_some() {}
        });

        group.bench_function(BenchmarkId::new("unpair", n), |bench| {
            let pair = Pair::connect(&mut relay, now, "unpair");
            let mut acks = Vec::new();
            bench.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    answer_acks(&mut relay, now, std::mem::take(&mut acks));
                    acks = pair.arm(&mut relay, now);
                    let start = Instant::now();
                    relay.handle(now, pair.a, Command::Unregister { req: ReqId(1) });
                    drain(&mut relay, &mut events);
                    spent += start.elapsed();
                    // Both ends confirm, as clients do, so that no notice stays pending.
                    let notices: Vec<(ConnId, Ticket)> = events
                        .iter()
                        .filter_map(|out| match out.event {
                            Event::Unregistered { ticket } => Some((out.conn, ticket)),
                            _ => None,
                        })
                        .collect();
                    assert_eq!(notices.len(), 2, "both ends are told");
                    for (conn, ticket) in notices {
                        let answer = Answer::Done;
                        relay.handle(now, conn, Command::Answer { ticket, answer });
                    }
                    while relay.poll_event().is_some() {}
                }
                spent
            });
            answer_acks(&mut relay, now, acks);
            relay.disconnect(now, pair.a);
            relay.disconnect(now, pair.b);
            while relay.poll_event().is_some() {}
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = scale
}
criterion_main!(benches);
