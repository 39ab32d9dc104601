//! supervisor-gateway: an HTTP gateway in front of a Supervisor-style API that
//! maps each caller's token to a role and decides every request against a
//! route permission table before forwarding it.
//!
//! The modules follow a request's steps:
//!
//! - [`config`]: the configuration file, checked in full before anything listens.
//! - [`target`]: steps 1 and 2, the hostile-input filter and the canonical target.
//! - [`caller`]: the token headers and who holds each token.
//! - [`pattern`]: the table's path patterns and their regular expressions.
//! - [`table`]: the permission table file and its compiled rule sets.
//! - `pathset`: one-pass searches of a rule set's path expressions.
//! - `spares`: emptied values kept per thread for the next request.
//! - [`automata`]: exact checks over patterns by searching products of automata.
//! - [`protection`]: the protection-mode invariant, proven on every table.
//! - [`lint`]: `validate`'s exact checks for unmatchable, useless and shadowed rules.
//! - [`decision`]: steps 3 to 9, and the permit forwarding requires.
//! - `body`: request body limits, and when a body has been sent in full.
//! - [`forwarding`]: headers in and out, streaming to the upstream, 502 and 504.
//! - `upstream`: the pooled keep-alive connections to the upstream.
//! - `exchange`: the gateway's own HTTP/1.1 client for bodiless GET and HEAD.
//! - [`websocket`]: the WebSocket relay on the core proxy paths.
//! - [`responses`]: the error envelope the gateway writes itself.
//! - [`gateway`]: one request from judgement to answer, and its log event.
//! - [`server`]: the accept loop and graceful shutdown.
//! - `idle`: keep-alive connections parked between requests, and their timeouts.
//! - [`reload`]: hot reload on SIGHUP and on file changes.
//! - [`check`]: the `check` command's explanation of one decision.
//! - [`cases`]: the `test` command's policy cases and rule coverage.
//! - [`routes`]: the `routes` command's caller × route matrix.
//! - [`demo`]: the built-in demo, the mock upstream with a gateway in front.
//! - [`mock_upstream`]: a Supervisor look-alike that records what reaches it.

pub mod addons_view;
pub mod admin;
pub mod advise;
pub mod audit;
pub mod automata;
mod body;
mod byte_set;
pub mod caller;
pub mod cases;
pub mod check;
pub mod config;
pub mod decision;
pub mod decision_cache;
pub mod demo;
mod due;
mod exchange;
pub mod files;
pub mod forwarding;
pub mod gateway;
mod idle;
pub mod lint;
mod manifest_subset;
pub mod manifests;
pub mod metrics;
pub mod mock_upstream;
mod pathset;
pub mod pattern;
pub mod places;
pub(crate) mod plain;
pub mod protection;
pub mod protection_state;
pub mod rating;
pub mod reload;
pub mod responses;
pub mod routes;
pub mod server;
pub mod signals;
pub mod signed;
mod spares;
pub mod table;
pub mod target;
pub mod token_commands;
mod upstream;
pub mod websocket;
mod websocket_meter;
mod websocket_pieces;
