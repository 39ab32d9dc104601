//! Upstream failures the gateway answers itself: unreachable (502) and too
//! slow (504), in the error envelope.

use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use supervisor_gateway::config::Config;

use crate::helpers::*;

#[tokio::test]
async fn an_unreachable_upstream_gives_502_quickly() {
    let mock = start_mock().await;
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dead = closed.local_addr().expect("addr");
    drop(closed);
    let config = Config::from_yaml(&test_config_yaml(dead), "test config").expect("config");
    let gateway = TestGateway::with_config(config, mock).await;

    let started = Instant::now();
    let response = gateway
        .send(&RawRequest::new("GET", "/os/info").token(TOK_DEFAULT))
        .await;
    assert_refused(&response, 502, "unreachable upstream");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn an_upstream_that_never_answers_gives_504() {
    let mock = start_mock().await;
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = silent.local_addr().expect("addr");
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let text = test_config_yaml(addr).replace(
        "upstream_response_timeout_ms: 2000",
        "upstream_response_timeout_ms: 300",
    );
    let config = Config::from_yaml(&text, "test config").expect("config");
    let gateway = TestGateway::with_config(config, mock).await;

    let response = gateway
        .send(&RawRequest::new("GET", "/os/info").token(TOK_DEFAULT))
        .await;
    assert_refused(&response, 504, "silent upstream");
    hold.abort();
}
