//! End-to-end tests: a raw TCP client, the gateway and the mock upstream, all
//! on loopback with ephemeral ports.

mod helpers;

mod admin;
mod clients;
mod commands;
mod faults;
mod headers;
mod hostile;
mod logs;
mod manifests;
mod matrix;
mod parking;
mod protection;
mod reload;
mod streams;
mod tokens;
mod upstream;
mod workers;
