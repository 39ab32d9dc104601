//! The full decision (steps 1 to 9: target, token, caller, table) over a
//! mixed set of realistic requests across every caller, v1 and v2, under
//! the default table and under one ten times larger. As in the gateway,
//! steps 3 to 9 are answered from the thread's kept decisions once a
//! question was asked (`decision_cache`); the `steps` group times the
//! table searched and kept apart.
//!
//! Run with `cargo bench --bench decision`; the time reported is for the
//! whole set, so divide by the number of requests printed for one decision.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::request::Parts;
use http::Request;

use supervisor_gateway::caller::{presented_token, Caller, Callers, TokenDigest};
use supervisor_gateway::config::{Addon, Role};
use supervisor_gateway::decision::{decide, Standing};
use supervisor_gateway::decision_cache::decide_kept;
use supervisor_gateway::forwarding::header_problem;
use supervisor_gateway::gateway::{judge, Policy};
use supervisor_gateway::routes::known_routes;
use supervisor_gateway::table::{Table, DEFAULT_TABLE};
use supervisor_gateway::target;

const TOKENS: [&str; 9] = [
    "bench-default",
    "bench-homeassistant",
    "bench-backup",
    "bench-manager",
    "bench-admin",
    "bench-noapi",
    "bench-core",
    "bench-cli",
    "bench-observer",
];

fn callers() -> Callers {
    let mut callers = Callers::default();
    for (token, role) in TOKENS.iter().zip(Role::ALL) {
        let addon = Addon {
            slug: token.replace('-', "_"),
            hassio_api: true,
            role,
            homeassistant_api: role == Role::Homeassistant,
            auth_api: false,
        };
        callers.insert(
            TokenDigest::of(token.as_bytes()),
            Caller::Addon(Arc::new(addon)),
        );
    }
    let noapi = Addon {
        slug: "noapi".into(),
        hassio_api: false,
        role: Role::Default,
        homeassistant_api: false,
        auth_api: false,
    };
    callers.insert(
        TokenDigest::of(b"bench-noapi"),
        Caller::Addon(Arc::new(noapi)),
    );
    callers.insert(TokenDigest::of(b"bench-core"), Caller::HomeAssistant);
    callers.insert(TokenDigest::of(b"bench-cli"), Caller::Cli);
    callers.insert(TokenDigest::of(b"bench-observer"), Caller::Observer);
    callers
}

/// Every known route (v1 and v2), each with the next caller in turn, in all
/// three token headers and now and then none.
fn requests() -> Vec<Parts> {
    known_routes()
        .into_iter()
        .enumerate()
        .map(|(index, (method, path))| {
            let token = TOKENS[index % TOKENS.len()];
            let builder = Request::builder().method(method).uri(path);
            let builder = match index % 4 {
                0 => builder.header("x-supervisor-token", token),
                1 => builder.header("authorization", format!("Bearer {token}")),
                2 => builder.header("x-hassio-key", token),
                _ => builder,
            };
            let request = builder
                .header("host", "supervisor")
                .header("content-type", "application/json")
                .body(())
                .expect("bench request");
            request.into_parts().0
        })
        .collect()
}

/// The default table with nine more rules per rule, spread over the roles.
fn ten_times_table() -> Table {
    let mut extra = String::new();
    for index in 0..880 {
        extra.push_str(&format!("      - /extension{index}/<slug>/**\n"));
    }
    let text = DEFAULT_TABLE.replacen(
        "      - /addons/reload\n",
        &format!("      - /addons/reload\n{extra}"),
        1,
    );
    Table::from_yaml(&text, "ten times").expect("the larger table loads")
}

fn bench(c: &mut Criterion) {
    let requests = requests();
    let mut group = c.benchmark_group("decision");
    group.throughput(Throughput::Elements(requests.len() as u64));
    for (name, table) in [
        ("default table", Table::builtin().expect("default table")),
        ("10x table", ten_times_table()),
    ] {
        println!(
            "{name}: {} rules, {} requests per iteration",
            table.rule_count(),
            requests.len()
        );
        let policy = Policy {
            table,
            callers: callers(),
            shadow: None,
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                for parts in &requests {
                    black_box(judge(&policy, black_box(parts)));
                }
            })
        });
    }
    group.finish();
    parts_of_a_decision(c, &requests);
}

/// Where the time of one decision goes, step by step, on the default table.
fn parts_of_a_decision(c: &mut Criterion, requests: &[Parts]) {
    let policy = Policy {
        table: Table::builtin().expect("default table"),
        callers: callers(),
        shadow: None,
    };
    let targets: Vec<_> = requests
        .iter()
        .map(|parts| target::parse(&parts.method, &parts.uri).expect("bench targets are canonical"))
        .collect();
    let mut group = c.benchmark_group("steps");
    group.throughput(Throughput::Elements(requests.len() as u64));
    group.bench_function("target (steps 1-2)", |b| {
        b.iter(|| {
            for parts in requests {
                black_box(target::parse(&parts.method, black_box(&parts.uri)).ok());
            }
        })
    });
    group.bench_function("caller (token and digest)", |b| {
        b.iter(|| {
            for parts in requests {
                let token = presented_token(black_box(&parts.headers)).ok().flatten();
                black_box(policy.callers.identify(token));
            }
        })
    });
    group.bench_function("token digest alone", |b| {
        b.iter(|| {
            for token in TOKENS.iter().cycle().take(requests.len()) {
                black_box(TokenDigest::of(black_box(token.as_bytes())));
            }
        })
    });
    group.bench_function("token headers alone", |b| {
        b.iter(|| {
            for parts in requests {
                black_box(presented_token(black_box(&parts.headers)).ok());
            }
        })
    });
    group.bench_function("headers check", |b| {
        b.iter(|| {
            for parts in requests {
                black_box(header_problem(black_box(&parts.headers)));
            }
        })
    });
    let callers: Vec<Caller> = requests
        .iter()
        .map(|parts| {
            policy
                .callers
                .identify(presented_token(&parts.headers).ok().flatten())
        })
        .collect();
    group.bench_function("table (steps 3-9), searched", |b| {
        b.iter(|| {
            for ((parts, target), caller) in requests.iter().zip(&targets).zip(&callers) {
                black_box(decide(
                    &policy.table,
                    caller,
                    &parts.method,
                    black_box(&target.path),
                ));
            }
        })
    });
    // As `judge` asks it: answered from the thread's kept decisions after
    // the first iteration.
    group.bench_function("table (steps 3-9), kept", |b| {
        b.iter(|| {
            for ((parts, target), caller) in requests.iter().zip(&targets).zip(&callers) {
                black_box(decide_kept(
                    &policy.table,
                    Standing::of(caller),
                    &parts.method,
                    black_box(&target.path),
                ));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
