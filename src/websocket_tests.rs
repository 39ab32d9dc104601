use serde_json::Value;

use super::messages::{Shortened, MAX_ECHOED_ID};
use super::*;

fn json(message: &Message) -> Value {
    match message {
        Message::Text(text) => serde_json::from_str(text).expect("json"),
        other => panic!("expected text, got {other:?}"),
    }
}

/// What goes on and what the client is answered, as JSON.
fn instead(verdict: Verdict) -> (Option<Value>, Vec<Value>) {
    match verdict {
        Verdict::Instead { forward, refused } => (
            forward.as_ref().map(json),
            refused
                .into_iter()
                .map(|id| json(&result_error(id, "unauthorized", "Unauthorized")))
                .collect(),
        ),
        Verdict::Answer(answer) => (None, vec![json(&answer)]),
        _ => panic!("expected the message to be judged"),
    }
}

#[test]
fn supervisor_and_hassio_messages_are_answered_with_their_id() {
    for kind in [
        "supervisor/api",
        "hassio/addon/info",
        "supervisor\\u002fapi",
    ] {
        let (forward, answers) = instead(judge_message(&format!(r#"{{"id":7,"type":"{kind}"}}"#)));
        assert_eq!(forward, None);
        assert_eq!(answers.len(), 1);
        assert_eq!(answers[0]["id"], 7);
        assert_eq!(answers[0]["success"], false);
        assert_eq!(answers[0]["error"]["code"], "unauthorized");
    }
}

#[test]
fn an_array_goes_on_without_its_refused_commands() {
    let text = r#"[{"id":1,"type":"get_states"},{"id":2,"type":"supervisor/api"},{"id":3,"type":"hassio/x"},{"id":4,"type":"ping"}]"#;
    let (forward, answers) = instead(judge_message(text));
    let forward = forward.expect("the allowed commands go on");
    assert_eq!(
        forward,
        serde_json::json!([{"id":1,"type":"get_states"},{"id":4,"type":"ping"}])
    );
    let ids: Vec<&Value> = answers.iter().map(|answer| &answer["id"]).collect();
    assert_eq!(ids, [&serde_json::json!(2), &serde_json::json!(3)]);
    let written = r#"[ {"type":"ping","id":1,"n":123456789012345678901234567890},{"id":2,"type":"hassio/x"}]"#;
    match judge_message(written) {
        Verdict::Instead {
            forward: Some(Message::Text(text)),
            ..
        } => assert_eq!(
            text.as_str(),
            r#"[{"type":"ping","id":1,"n":123456789012345678901234567890}]"#,
            "the allowed command was not passed on as written"
        ),
        _ => panic!("expected the array to be judged"),
    }
    let (forward, answers) = instead(judge_message(r#"[{"id":9,"type":"supervisor/api"}]"#));
    assert_eq!((forward, answers.len()), (None, 1));
    assert!(matches!(
        judge_message(r#"[{"id":1,"type":"ping"}]"#),
        Verdict::Forward
    ));
}

#[test]
fn text_that_is_not_readable_json_goes_nowhere() {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    for text in [
        "not json",
        r#"{"id":1,"type":"supervisor/api","n":1e999}"#,
        deep.as_str(),
    ] {
        let (forward, answers) = instead(judge_message(text));
        assert_eq!(forward, None, "{text}");
        assert_eq!(answers[0]["error"]["code"], "invalid_format");
    }
}

#[test]
fn a_refused_command_is_answered_under_its_id_as_written() {
    for (id, expected) in [
        (r#""abc""#, serde_json::json!("abc")),
        (r#"{"n": [1, 2]}"#, serde_json::json!({"n": [1, 2]})),
        ("null", Value::Null),
    ] {
        let text = format!(r#"{{"id":{id},"type":"hassio/x"}}"#);
        let (_, answers) = instead(judge_message(&text));
        assert_eq!(answers[0]["id"], expected, "{text}");
    }
    let (_, answers) = instead(judge_message(r#"{"type":"hassio/x"}"#));
    assert_eq!(answers[0]["id"], Value::Null);
}

#[test]
fn an_id_longer_than_64_bytes_is_answered_as_null() {
    let at_limit = format!(r#""{}""#, "a".repeat(MAX_ECHOED_ID - 2));
    let over = format!(r#""{}""#, "a".repeat(MAX_ECHOED_ID - 1));
    for (id, expected) in [
        (&at_limit, Value::String("a".repeat(MAX_ECHOED_ID - 2))),
        (&over, Value::Null),
    ] {
        let text = format!(r#"{{"id":{id},"type":"hassio/x"}}"#);
        let (_, answers) = instead(judge_message(&text));
        assert_eq!(answers[0]["id"], expected, "{text}");
    }
}

#[test]
fn a_logged_type_is_cut_to_100_characters_and_escaped() {
    let long = format!("hassio/{}", "é".repeat(200));
    let shown = Shortened(&long).to_string();
    assert_eq!(shown, format!("hassio/{}…", "é".repeat(93)));
    assert_eq!(Shortened("hassio/\nx").to_string(), "hassio/\\nx");
}

#[test]
fn a_command_that_names_a_field_twice_goes_nowhere() {
    // Readers disagree on which of the two counts.
    for text in [
        r#"{"id":1,"type":"ping","type":"supervisor/api"}"#,
        r#"[{"id":1,"type":"supervisor/api","type":"ping"}]"#,
        r#"{"id":1,"id":2,"type":"ping"}"#,
    ] {
        let (forward, answers) = instead(judge_message(text));
        assert_eq!(forward, None, "{text}");
        assert_eq!(answers[0]["error"]["code"], "invalid_format", "{text}");
    }
}

#[test]
fn other_messages_pass_unchanged() {
    for text in [
        r#"{"id":1,"type":"get_states"}"#,
        r#"{"id":2,"type":"supervisors"}"#,
        r#"{"id":3,"type":"Supervisor/api"}"#,
        "42",
    ] {
        assert!(matches!(judge_message(text), Verdict::Forward), "{text}");
    }
}

#[test]
fn an_upgrade_needs_get_both_headers_and_a_websocket_path() {
    let parts = |method: Method, upgrade: &str, connection: &str| {
        let request = http::Request::builder()
            .method(method)
            .uri("/core/websocket")
            .header("upgrade", upgrade)
            .header("connection", connection)
            .body(())
            .expect("request");
        request.into_parts().0
    };
    assert!(is_upgrade(
        &parts(Method::GET, "WebSocket", "keep-alive, Upgrade"),
        "/core/websocket"
    ));
    assert!(is_upgrade(
        &parts(Method::GET, "websocket", "upgrade"),
        "/v2/homeassistant/api/websocket"
    ));
    assert!(!is_upgrade(
        &parts(Method::POST, "websocket", "upgrade"),
        "/core/websocket"
    ));
    assert!(!is_upgrade(
        &parts(Method::GET, "websocket", "keep-alive"),
        "/core/websocket"
    ));
    assert!(!is_upgrade(
        &parts(Method::GET, "websocket", "upgrade"),
        "/core/api/states"
    ));
}

#[test]
fn an_upstream_101_may_take_no_extension_and_only_a_subprotocol_offered() {
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let headers = |pairs: &[(&'static str, &str)]| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("value"));
        }
        map
    };
    let answer = |extra: &[(&'static str, &'static str)]| {
        let mut pairs = vec![
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", accept.as_str()),
        ];
        pairs.extend_from_slice(extra);
        headers(&pairs)
    };
    let asked_none = headers(&[("sec-websocket-key", key)]);
    let offering = headers(&[
        ("sec-websocket-key", key),
        ("sec-websocket-protocol", "chat, superchat"),
        ("sec-websocket-protocol", "v2"),
    ]);
    assert!(is_handshake_answer(&asked_none, &answer(&[])));
    assert!(is_handshake_answer(&offering, &answer(&[])));
    for chosen in ["superchat", "chat", "v2"] {
        assert!(
            is_handshake_answer(
                &offering,
                &headers(&[
                    ("upgrade", "websocket"),
                    ("connection", "upgrade"),
                    ("sec-websocket-accept", accept.as_str()),
                    ("sec-websocket-protocol", chosen),
                ])
            ),
            "{chosen}"
        );
    }
    for (case, request, extra) in [
        (
            "an extension offered by no one",
            &asked_none,
            &[("sec-websocket-extensions", "permessage-deflate")][..],
        ),
        (
            "a subprotocol asked for by no one",
            &asked_none,
            &[("sec-websocket-protocol", "evil")][..],
        ),
        (
            "a subprotocol not among those offered",
            &offering,
            &[("sec-websocket-protocol", "Chat")][..],
        ),
        (
            "two subprotocols",
            &offering,
            &[("sec-websocket-protocol", "chat, v2")][..],
        ),
        (
            "two subprotocol lines",
            &offering,
            &[
                ("sec-websocket-protocol", "chat"),
                ("sec-websocket-protocol", "chat"),
            ][..],
        ),
        (
            "an empty subprotocol",
            &offering,
            &[("sec-websocket-protocol", "")][..],
        ),
    ] {
        assert!(!is_handshake_answer(request, &answer(extra)), "{case}");
    }
}

#[test]
fn the_upstreams_auth_messages_mark_how_far_the_auth_phase_has_gone() {
    let text = |json: &str| Message::text(json.to_owned());
    assert_eq!(
        AuthPhase::of(&text(r#"{"type": "auth_required", "ha_version": "x"}"#)),
        Some(AuthPhase::Required)
    );
    assert_eq!(
        AuthPhase::of(&text(r#"{"type":"auth_ok"}"#)),
        Some(AuthPhase::Over)
    );
    assert_eq!(
        AuthPhase::of(&text(r#"{"type":"auth_invalid","message":"no"}"#)),
        Some(AuthPhase::Over)
    );
    for other in [
        text(r#"{"type":"result","id":1}"#),
        text(r#"{"id":1}"#),
        text("auth_ok"),
        Message::binary(b"{\"type\":\"auth_ok\"}".to_vec()),
    ] {
        assert_eq!(AuthPhase::of(&other), None, "{other:?}");
    }
    assert!(AuthPhase::Nothing < AuthPhase::Required && AuthPhase::Required < AuthPhase::Over);
}

#[tokio::test]
async fn refusals_are_held_until_auth_ok_and_not_past_the_most() {
    let text = |n: usize| Message::text(format!("{n}"));
    let (reached, phase) = watch::channel(AuthPhase::Required);
    let mut order = AuthOrder::new(phase);
    // Before `auth_ok`: held, in order, and not ready.
    assert!(order.hold(text(1)).is_none());
    assert!(order.hold(text(2)).is_none());
    let early = tokio::time::timeout(Duration::from_millis(50), order.ready()).await;
    assert!(early.is_err(), "ready before auth_ok");
    reached.send_replace(AuthPhase::Over);
    tokio::time::timeout(Duration::from_secs(1), order.ready())
        .await
        .expect("ready once auth_ok went");
    assert_eq!(order.take(), [text(1), text(2)]);
    // After it, and with none held: sent at once.
    assert_eq!(order.hold(text(3)), Some(text(3)));

    // Too many held before `auth_ok`: they go out as they are.
    let (_reached, phase) = watch::channel(AuthPhase::Required);
    let mut order = AuthOrder::new(phase);
    for n in 0..AUTH_ORDER_HELD_MOST {
        assert!(order.hold(text(n)).is_none());
    }
    tokio::time::timeout(Duration::from_secs(1), order.ready())
        .await
        .expect("ready once too many are held");
    assert_eq!(order.take().len(), AUTH_ORDER_HELD_MOST);
    assert_eq!(order.hold(text(0)), Some(text(0)), "no more holding");

    // Given one by one (as the refused commands of one message are), no
    // more than the most are ever held: the last sends them all, in order.
    let given = AUTH_ORDER_HELD_MOST + 10;
    let (to_client, mut queue) = client_queue();
    let client = tokio::spawn(async move {
        let mut got = Vec::new();
        while got.len() < given {
            got.push(queue.recv().await.expect("queued").message);
        }
        got
    });
    let (_reached, phase) = watch::channel(AuthPhase::Required);
    let mut order = AuthOrder::new(phase);
    for n in 0..given {
        order.give(text(n), &to_client).await.expect("queued");
        assert!(order.held.len() < AUTH_ORDER_HELD_MOST, "{n}");
    }
    let got = tokio::time::timeout(Duration::from_secs(5), client)
        .await
        .expect("all sent")
        .expect("the client's side");
    assert_eq!(got, (0..given).map(text).collect::<Vec<_>>());

    // The upstream's side gone: ready at once, no more holding.
    let (reached, phase) = watch::channel(AuthPhase::Nothing);
    let mut order = AuthOrder::new(phase);
    assert!(order.hold(text(1)).is_none());
    drop(reached);
    tokio::time::timeout(Duration::from_secs(1), order.ready())
        .await
        .expect("ready once the upstream's side ended");
    assert_eq!(order.take(), [text(1)]);
    assert_eq!(order.hold(text(2)), Some(text(2)));
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_ran_out_is_not_waited_again() {
    let (_reached, phase) = watch::channel(AuthPhase::Required);
    let mut order = AuthOrder::new(phase);
    assert!(order.hold(Message::text("1")).is_none());
    let started = tokio::time::Instant::now();
    order.ready().await;
    assert_eq!(started.elapsed(), AUTH_ORDER_WAIT);
    assert_eq!(order.take().len(), 1);
    assert!(order.hold(Message::text("2")).is_some());
}

#[tokio::test]
async fn a_relay_task_let_go_of_is_aborted() {
    // (A panic in the relay left its writer and reader running, and both
    // sockets open: helper 83.)
    let (held, gone) = oneshot::channel::<()>();
    let task = Ending(tokio::spawn(async move {
        let _held = held;
        std::future::pending::<()>().await;
    }));
    drop(task);
    let ended = tokio::time::timeout(Duration::from_secs(5), gone).await;
    assert!(matches!(ended, Ok(Err(_))), "the task still runs");
}
