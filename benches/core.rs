//! The relay core alone: the cost of routing one emit (with and without an ack) through the
//! state machine, without any transport. The front-end figures are in `transports.rs`.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use relay_core::rmpv::Value;
use relay_core::{Answer, Command, Config, Event, Payload, Relay, ReqId};

fn paired() -> (Relay, relay_core::ConnId, relay_core::ConnId) {
    let now = Instant::now();
    let mut relay = Relay::new(Config {
        rate: relay_core::RateLimits::OFF,
        ..Config::default()
    });
    let a = relay
        .connect(now, Some("A"), None, relay_core::Transport::Native)
        .unwrap();
    let b = relay
        .connect(now, Some("B"), None, relay_core::Transport::Native)
        .unwrap();
    relay.handle(
        now,
        a,
        Command::Register {
            req: ReqId(0),
            target: "B".into(),
        },
    );
    let ticket = loop {
        match relay.poll_event().map(|o| o.event) {
            Some(Event::RegisterRequest { ticket, .. }) => break ticket,
            Some(_) => continue,
            None => panic!("no pairing request"),
        }
    };
    relay.handle(
        now,
        b,
        Command::Answer {
            ticket,
            answer: Answer::Accept(true),
        },
    );
    while relay.poll_event().is_some() {}
    (relay, a, b)
}

fn emit(c: &mut Criterion) {
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(1));
    let args = Payload::Values(vec![Value::from("hello"), Value::Binary(vec![0; 64])]);

    group.bench_function("emit", |bench| {
        let (mut relay, a, _) = paired();
        let now = Instant::now();
        bench.iter_batched(
            || args.clone(),
            |args| {
                relay.handle(
                    now,
                    a,
                    Command::Emit {
                        target: "B".into(),
                        event: "e".into(),
                        args,
                        ack: None,
                    },
                );
                relay.poll_event().expect("delivered")
            },
            BatchSize::SmallInput,
        )
    });

    group.bench_function("emit_with_ack_round_trip", |bench| {
        let (mut relay, a, b) = paired();
        let now = Instant::now();
        let mut req = 0;
        bench.iter_batched(
            || args.clone(),
            |args| {
                req += 1;
                relay.handle(
                    now,
                    a,
                    Command::Emit {
                        target: "B".into(),
                        event: "e".into(),
                        args,
                        ack: Some(ReqId(req)),
                    },
                );
                let Some(Event::Deliver {
                    ticket: Some(ticket),
                    ..
                }) = relay.poll_event().map(|o| o.event)
                else {
                    panic!("no delivery")
                };
                relay.handle(
                    now,
                    b,
                    Command::Answer {
                        ticket,
                        answer: Answer::Ack(Payload::empty()),
                    },
                );
                relay.poll_event().expect("reply")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, emit);
criterion_main!(benches);
