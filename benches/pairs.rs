//! Relayed messages per second of several pairs at once, driven from several threads
//! through the shared handle every front end uses (`relay_runtime::RelayHandle`).
//!
//! Pairs have nothing to do with each other, so the figure should grow with the number of
//! threads driving them; a global lock around the core caps it at what one thread does.
//!
//! - `pairs/emit/P`: P pairs, split over `THREADS` OS threads (each thread owns at least one
//!   pair and no pair is shared, so P = 1 runs one thread); every thread sends emits without
//!   an ack round-robin over its pairs. The time runs until every thread is done and the
//!   receiving sinks counted every delivery.
//! - `pairs/emit_ack/P`: the same with an ack on every emit. Each sending thread has a
//!   partner thread that answers the tickets its receivers got, and keeps at most `WINDOW`
//!   acks outstanding; the time runs until every reply came back.
//!
//! Sinks only count (they are unbounded, unlike a front end's outbox), so the figures are
//! the core plus the handle's synchronisation, no transport.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use relay_core::rmpv::Value;
use relay_core::{
    Answer, Command, Config, ConnId, Event, Payload, Reply, ReqId, Ticket, Transport,
};
use relay_runtime::{Refused, RelayHandle, Sink};

const THREADS: usize = 2;
const PAIRS: [usize; 3] = [1, 4, 16];
/// Emits each thread sends per iteration.
const EMITS: u64 = 1_000;
/// Acks one sending thread may have outstanding.
const WINDOW: usize = 16;

/// The sink of one connection: counts deliveries, keeps the pairing request put to it, and
/// passes ack tickets and ack replies to the threads that wait for them.
struct Counting {
    /// The pair this connection belongs to (an index into `Shared::pairs`).
    pair: usize,
    delivered: AtomicU64,
    pairing: Mutex<Option<Ticket>>,
    registered: AtomicBool,
    tickets: mpsc::Sender<(usize, Ticket)>,
    replies: mpsc::Sender<Result<(), String>>,
}

impl Sink for Counting {
    fn send(&self, event: Event) -> Result<(), Refused> {
        // The lanes' receivers live as long as the relay, so these sends cannot fail.
        match event {
            Event::Deliver { ticket, .. } => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                if let Some(ticket) = ticket {
                    let _ = self.tickets.send((self.pair, ticket));
                }
            }
            Event::RegisterRequest { ticket, .. } => {
                *self.pairing.lock().unwrap() = Some(ticket);
            }
            Event::Reply { reply, .. } => match reply {
                Reply::Registered(ok) => self.registered.store(ok, Ordering::Release),
                Reply::Ack(_) => drop(self.replies.send(Ok(()))),
                Reply::Failed(error) => drop(self.replies.send(Err(error.to_string()))),
                _ => {}
            },
            _ => {}
        }
        Ok(())
    }
}

/// Waits (at most a few seconds) for something the relay does on another thread.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < give_up, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

/// One pairing: `a` sends to `b`.
struct Pair {
    a: ConnId,
    b: ConnId,
    b_id: String,
    received: Arc<Counting>,
}

/// What one sending thread owns: its pairs, the tickets their receivers got and the
/// replies their senders got.
struct Lane {
    pairs: Vec<usize>,
    tickets: mpsc::Receiver<(usize, Ticket)>,
    replies: mpsc::Receiver<Result<(), String>>,
}

/// What every thread may touch: the handle and the pairs.
struct Shared {
    handle: RelayHandle,
    pairs: Vec<Pair>,
}

impl Shared {
    fn delivered(&self) -> u64 {
        let counts = self
            .pairs
            .iter()
            .map(|p| p.received.delivered.load(Ordering::Relaxed));
        counts.sum()
    }

    fn emit(&self, pair: usize, ack: Option<ReqId>) {
        let pair = &self.pairs[pair];
        let emit = Command::Emit {
            target: pair.b_id.clone(),
            event: "e".into(),
            args: Payload::Values(vec![Value::from("hello")]),
            ack,
        };
        self.handle.command(pair.a, emit);
    }

    fn ack(&self, pair: usize, ticket: Ticket) {
        let answer = Answer::Ack(Payload::empty());
        self.handle
            .command(self.pairs[pair].b, Command::Answer { ticket, answer });
    }
}

struct Relayed {
    shared: Shared,
    lanes: Vec<Lane>,
}

impl Relayed {
    /// A relay with `n` pairs, split over `min(THREADS, n)` lanes. Call inside a runtime.
    fn new(n: usize) -> Self {
        let handle = RelayHandle::new(Config {
            rate: relay_core::RateLimits::OFF,
            ..Config::default()
        });
        let lanes = THREADS.min(n);
        let channels: Vec<_> = (0..lanes)
            .map(|_| (mpsc::channel(), mpsc::channel()))
            .collect();
        let mut pairs = Vec::new();
        for i in 0..n {
            let ((tickets, _), (replies, _)) = &channels[i % lanes];
            let sink = || {
                Arc::new(Counting {
                    pair: i,
                    delivered: AtomicU64::new(0),
                    pairing: Mutex::new(None),
                    registered: AtomicBool::new(false),
                    tickets: tickets.clone(),
                    replies: replies.clone(),
                })
            };
            let (a_id, b_id) = (format!("a{i}"), format!("b{i}"));
            let (sent, received) = (sink(), sink());
            let a = handle
                .connect(Some(&a_id), None, Transport::Native, sent.clone())
                .unwrap();
            let b = handle
                .connect(Some(&b_id), None, Transport::Native, received.clone())
                .unwrap();
            let register = Command::Register {
                req: ReqId(0),
                target: b_id.clone(),
            };
            handle.command(a, register);
            wait_until("the pairing request", || {
                received.pairing.lock().unwrap().is_some()
            });
            let ticket = received.pairing.lock().unwrap().take().unwrap();
            let answer = Answer::Accept(true);
            handle.command(b, Command::Answer { ticket, answer });
            wait_until("the pairing", || sent.registered.load(Ordering::Acquire));
            pairs.push(Pair {
                a,
                b,
                b_id,
                received,
            });
        }
        let lanes = channels
            .into_iter()
            .enumerate()
            .map(|(l, ((_, tickets), (_, replies)))| Lane {
                pairs: (l..n).step_by(lanes).collect(),
                tickets,
                replies,
            })
            .collect();
        Relayed {
            shared: Shared { handle, pairs },
            lanes,
        }
    }

    /// Every lane sends `per_lane` emits without ack; returns when all were delivered.
    fn run_emits(&mut self, per_lane: u64) -> Duration {
        let shared = &self.shared;
        let expected = shared.delivered() + per_lane * self.lanes.len() as u64;
        let start = Instant::now();
        std::thread::scope(|s| {
            for lane in &self.lanes {
                let pairs = &lane.pairs;
                s.spawn(move || {
                    for (_, &pair) in (0..per_lane).zip(pairs.iter().cycle()) {
                        shared.emit(pair, None);
                    }
                });
            }
        });
        wait_until("the deliveries", || shared.delivered() == expected);
        start.elapsed()
    }

    /// Every lane sends `per_lane` emits with an ack, answered by the lane's other thread;
    /// returns when every reply came back.
    fn run_acks(&mut self, per_lane: u64) -> Duration {
        let shared = &self.shared;
        let start = Instant::now();
        std::thread::scope(|s| {
            for lane in &mut self.lanes {
                let Lane {
                    pairs,
                    tickets,
                    replies,
                } = lane;
                s.spawn(move || {
                    for _ in 0..per_lane {
                        let (pair, ticket) = tickets.recv().expect("a ticket");
                        shared.ack(pair, ticket);
                    }
                });
                let pairs = &*pairs;
                s.spawn(move || {
                    let wait_reply = || replies.recv().expect("a reply").expect("acked");
                    let mut outstanding = 0;
                    for (i, &pair) in (0..per_lane).zip(pairs.iter().cycle()) {
                        if outstanding == WINDOW {
                            wait_reply();
                            outstanding -= 1;
                        }
                        shared.emit(pair, Some(ReqId(i)));
                        outstanding += 1;
                    }
                    (0..outstanding).for_each(|_| wait_reply());
                });
            }
        });
        start.elapsed()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn pairs(c: &mut Criterion) {
    let rt = runtime();
    let _entered = rt.enter();
    let mut group = c.benchmark_group("pairs");
    for n in PAIRS {
        let mut relayed = Relayed::new(n);
        let elements = EMITS * relayed.lanes.len() as u64;
        group.throughput(Throughput::Elements(elements));
        group.bench_function(BenchmarkId::new("emit", n), |bench| {
            bench.iter_custom(|iters| relayed.run_emits(iters * EMITS))
        });
        group.bench_function(BenchmarkId::new("emit_ack", n), |bench| {
            bench.iter_custom(|iters| relayed.run_acks(iters * EMITS))
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
    targets = pairs
}
criterion_main!(benches);
