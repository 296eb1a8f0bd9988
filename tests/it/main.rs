//! Integration tests: the real gateway on port 0, the real RabbitMQ (a missing broker is a
//! loud failure, not a skip), requests signed as the providers sign them.

mod admin;
mod chaos;
mod cluster;
mod console;
mod deadletter;
mod deploy;
mod example_configs;
mod github;
mod guards;
mod hardening;
mod harness;
mod inspect;
mod operations;
mod outage;
mod providers_e2e;
mod replicas;
mod senders;
